"""Footage index (segments, gaps), retention sweep, legal holds, DPO reports."""
