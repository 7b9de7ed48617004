"""Streams out: read models and facts as Parquet files for the warehouse (pyarrow)."""
