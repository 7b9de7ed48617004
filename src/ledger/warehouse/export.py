"""`ledger export NAME --format parquet --output PATH`: any registered export as one Parquet file.

Generic over the export registry (`ledger.projector.exports.EXPORTS`): the same columns and row order as the
CSV, typed (cents as int64, timestamps as UTC instants, numeric as exact decimals). Written to a temporary
file beside PATH and renamed, so PATH is either the old file or the whole new one.
"""

from __future__ import annotations

import os

import psycopg
import pyarrow.parquet as pq

from ledger.errors import NotFoundError
from ledger.projector.exports import EXPORTS, _query
from ledger.projector.runner import LIVE_SCHEMA
from ledger.warehouse.arrow import query_table


def export_parquet(conn: psycopg.Connection, name: str, path: str) -> int:
    """Write the read model NAME to PATH as Parquet; returns the number of rows written."""
    spec = EXPORTS.get(name)
    if spec is None:
        raise NotFoundError(f"unknown export {name!r}; known: {', '.join(sorted(EXPORTS))}")
    with conn.transaction():
        if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{LIVE_SCHEMA}.{spec.table}",)).fetchone()[0]:
            raise NotFoundError(f"export {name!r}: table {LIVE_SCHEMA}.{spec.table} does not exist "
                                "(run `ledger project`)")
        query, params = _query(conn, spec)
        table = query_table(conn, query, params or ())
    write_atomically(table, path, metadata={"ledger.export": name, "ledger.keys": ",".join(spec.keys)})
    return table.num_rows


def write_atomically(table, path: str, metadata: dict[str, str] | None = None) -> None:
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
