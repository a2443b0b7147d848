"""Fixtures: mariadb (filled in by its owner)."""
