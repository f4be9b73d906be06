"""Sharing agreements (issue 14): which organisation may see which cameras of another, live only
or live and recordings, on what legal ground, for how long; and every recipient session."""
