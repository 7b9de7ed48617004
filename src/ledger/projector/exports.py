"""Exports of the read models (SPEC §7 `ledger export`): CSV or JSON, streamed from a server-side cursor.

CSV: a header of the export's column names (keys first), rows sorted by the keys (numbers as numbers, text
bytewise, empty first), timestamps as UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`, an empty cell for null.
JSON: a list of objects with the same columns, numbers as numbers, null for null.
Register further exports with `register_export`; an export whose table does not exist is refused.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg
from psycopg import sql

from ledger.errors import NotFoundError

from .runner import LIVE_SCHEMA


@dataclass(frozen=True)
class ExportSpec:
    """A table of `ledger_proj`, its export columns in order, and the key columns rows are sorted by."""

    table: str
    columns: tuple[str, ...]
    keys: tuple[str, ...]


EXPORTS: dict[str, ExportSpec] = {}


def register_export(name: str, table: str, columns: tuple[str, ...] | list[str], keys: tuple[str, ...] | list[str]) -> None:
    """Makes `ledger export NAME` read TABLE (keys must be the leading columns)."""
    columns, keys = tuple(columns), tuple(keys)
    if columns[: len(keys)] != keys:
        raise ValueError(f"export {name}: keys {keys} must be the first columns")
    EXPORTS[name] = ExportSpec(table, columns, keys)


register_export(
    "customer-month", "customer_month",
    ("customer_id", "month", "segment", "owner", "plan", "region", "usage_units", "expected_cents",
     "invoiced_cents", "credits_cents", "late_adjustment_cents", "restatement_cents", "balance_cents",
     "variance_cents", "calculation"),
    ("customer_id", "month"),
)
register_export(
    "customer-month-meter", "customer_month_meter",
    ("customer_id", "month", "meter", "on_time_units", "late_units", "included_units", "overage_units",
     "expected_cents", "billed_units", "billed_cents"),
    ("customer_id", "month", "meter"),
)
register_export(
    "late-adjustments", "late_adjustments",
    ("customer_id", "original_month", "meter", "posting_month", "units", "amount_cents", "event_count",
     "first_position", "last_position"),
    ("customer_id", "original_month", "meter", "posting_month"),
)
register_export(
    "restatements", "restatements",
    ("customer_id", "original_month", "meter", "posting_month", "cause", "amount_cents", "change_count",
     "first_position", "last_position"),
    ("customer_id", "original_month", "meter", "posting_month", "cause"),
)
register_export(
    "dim-customer", "dim_customer",
    ("customer_id", "version", "valid_from", "valid_to", "name", "segment", "owner", "plan", "region"),
    ("customer_id", "version"),
)
register_export(
    "exceptions", "exceptions",
    ("kind", "invoice_id", "customer_id", "source", "source_customer_id", "month", "meter", "expected",
     "actual", "difference", "unit"),
    ("kind", "invoice_id", "customer_id", "source", "source_customer_id", "month", "meter"),
)


def format_timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _json_cell(value: Any) -> Any:
    """JSON numbers for numeric columns too (an integral numeric as an integer)."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return _cell(value)


def _query(conn: psycopg.Connection, spec: ExportSpec) -> sql.Composed:
    types = dict(conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (f"{LIVE_SCHEMA}.{spec.table}",)).fetchall())
    order = [
        sql.SQL("{} COLLATE \"C\" NULLS FIRST" if types.get(k) == "text" else "{} NULLS FIRST").format(sql.Identifier(k))
        for k in spec.keys
    ]
    return sql.SQL("SELECT {} FROM {}.{} ORDER BY {}").format(
        sql.SQL(", ").join(map(sql.Identifier, spec.columns)),
        sql.Identifier(LIVE_SCHEMA), sql.Identifier(spec.table), sql.SQL(", ").join(order))


def export(conn: psycopg.Connection, name: str, fmt: str, out: TextIO) -> int:
    """Writes the read model NAME to OUT as `csv` or `json`; returns the number of rows written."""
    spec = EXPORTS.get(name)
    if spec is None:
        raise NotFoundError(f"unknown export {name!r}; known: {', '.join(sorted(EXPORTS))}")
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown format {fmt!r}: csv or json")
    rows = 0
    with conn.transaction():
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{LIVE_SCHEMA}.{spec.table}",)).fetchone()[0]
        if not exists:
            raise NotFoundError(f"export {name!r}: table {LIVE_SCHEMA}.{spec.table} does not exist (run `ledger project`)")
        query = _query(conn, spec)
        with conn.cursor(name="ledger_export") as cur:
            cur.itersize = 10_000
            cur.execute(query)
            if fmt == "csv":
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(spec.columns)
                for row in cur:
                    writer.writerow(["" if v is None else _cell(v) for v in row])
                    rows += 1
            else:
                out.write("[")
                for row in cur:
                    out.write(",\n" if rows else "\n")
                    out.write(json.dumps(dict(zip(spec.columns, map(_json_cell, row))), ensure_ascii=False))
                    rows += 1
                out.write("\n]\n" if rows else "]\n")
    return rows

register_export(
    "adoption", "adoption",
    ("customer_id", "month", "active_days", "meters_used", "usage_units", "units_mom_pct",
     "first_usage_at", "last_usage_at"),
    ("customer_id", "month"),
)
register_export(
    "anomalies", "anomalies",
    ("customer_id", "day", "meter", "units", "baseline_units", "score"),
    ("customer_id", "day", "meter"),
)
