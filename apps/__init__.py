"""vadapters."""
