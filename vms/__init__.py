"""vms: privacy-first video management and camera registry."""

__version__ = "0.1.0"
