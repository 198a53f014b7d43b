"""Durable storage: the write-ahead log and the dataset's atomic Parquet files."""
