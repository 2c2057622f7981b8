"""The embedded backend: one DuckDB file, a write-ahead spool and an in-memory dedup index."""
