"""The catalog: every fact Shoal knows is a row here; files are named by content hash."""
