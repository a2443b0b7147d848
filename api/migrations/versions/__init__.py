"""One file per schema revision (``sourcecheck db revision -m "..."`` writes the next one)."""
