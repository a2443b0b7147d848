"""Fixtures: http (filled in by its owner)."""
