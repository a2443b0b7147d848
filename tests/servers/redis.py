"""Fixtures: redis (filled in by its owner)."""
