"""Benchmarks: figures printed, never asserted. Run from the repo root, e.g. ``python -m bench.queue``."""
