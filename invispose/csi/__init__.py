"""CSI ingestion: format readers, the canonical grid, sanitization and motion."""
