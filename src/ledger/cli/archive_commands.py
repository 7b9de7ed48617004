"""`ledger archive facts`: the store's facts as Parquet files, partitioned by month, written incrementally."""

from ledger.cli.main import app  # noqa: F401
