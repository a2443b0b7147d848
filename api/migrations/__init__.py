"""Alembic migrations of the metadata database; run them with ``sourcecheck db upgrade``."""
