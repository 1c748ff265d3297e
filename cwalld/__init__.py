"""cwalld — the Confession Wall daemon."""

__version__ = "0.1.0"
