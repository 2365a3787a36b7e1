"""Kernel selection: the static per-device tables (and, later, the online selector)."""
