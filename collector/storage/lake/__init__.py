"""The lake backend: collectors sharing one DuckLake (catalog in PostgreSQL, Parquet on S3 or a shared directory)."""
