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
import io
import json
from dataclasses import dataclass
from typing import Any, Iterator, TextIO

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


def _column_types(conn: psycopg.Connection, spec: ExportSpec) -> dict[str, str]:
    return dict(conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (f"{LIVE_SCHEMA}.{spec.table}",)).fetchall())


def _key(name: str, types: dict[str, str]) -> sql.Composable:
    """A key column as rows are sorted by it: text bytewise."""
    return sql.SQL("{} COLLATE \"C\"" if types.get(name) == "text" else "{}").format(sql.Identifier(name))


def _after(spec: ExportSpec, types: dict[str, str], after: list[Any]) -> tuple[sql.Composable, dict[str, Any]]:
    """Rows sorted after the key values AFTER (nulls first, as the export sorts them): a keyset page's start."""
    if len(after) != len(spec.keys):
        raise ValueError(f"a cursor of this export holds {len(spec.keys)} key values, not {len(after)}")
    value = lambda j: sql.SQL("{}::" + types[spec.keys[j]]).format(sql.Placeholder(f"after_{j}"))
    ors = []
    for i, name in enumerate(spec.keys):
        ands = [sql.SQL("{} IS NULL").format(sql.Identifier(prior)) if after[j] is None
                else sql.SQL("{} = {}").format(_key(prior, types), value(j))
                for j, prior in enumerate(spec.keys[:i])]
        ands.append(sql.SQL("{} IS NOT NULL").format(sql.Identifier(name)) if after[i] is None
                    else sql.SQL("{} > {}").format(_key(name, types), value(i)))
        ors.append(sql.SQL("({})").format(sql.SQL(" AND ").join(ands)))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(ors)), {f"after_{j}": v for j, v in enumerate(after)}


def _month_filter(spec: ExportSpec) -> sql.Composable:
    """The rows of one month (%s, YYYY-MM): by `month`, by either month of a late adjustment, by `day`, or the
    customer versions in force during the month."""
    if "month" in spec.columns:
        return sql.SQL("month = %(month)s")
    if "original_month" in spec.columns:
        return sql.SQL("(original_month = %(month)s OR posting_month = %(month)s)")
    if "day" in spec.columns:
        return sql.SQL("to_char(day, 'YYYY-MM') = %(month)s")
    if "valid_from" in spec.columns:
        return sql.SQL("(valid_from < (to_date(%(month)s, 'YYYY-MM') + interval '1 month') AT TIME ZONE 'UTC'"
                       " AND (valid_to IS NULL OR valid_to > to_date(%(month)s, 'YYYY-MM') AT TIME ZONE 'UTC'))")
    raise ValueError("this export has no month to filter by")


def _query(conn: psycopg.Connection, spec: ExportSpec, *, customer: str | None = None, month: str | None = None,
           after: list[Any] | None = None, limit: int | None = None, offset: int | None = None
           ) -> tuple[sql.Composed, dict[str, Any]]:
    types = _column_types(conn, spec)
    order = [sql.SQL("{} NULLS FIRST").format(_key(k, types)) for k in spec.keys]
    where: list[sql.Composable] = []
    params: dict[str, Any] = {"customer": customer, "month": month}
    if customer is not None:
        if "customer_id" not in spec.columns:
            raise ValueError("this export has no customer to filter by")
        where.append(sql.SQL("customer_id = %(customer)s"))
    if month is not None:
        where.append(_month_filter(spec))
    if after is not None:
        condition, values = _after(spec, types, after)
        where.append(condition)
        params.update(values)
    query = sql.SQL("SELECT {} FROM {}.{}{} ORDER BY {}{}{}").format(
        sql.SQL(", ").join(map(sql.Identifier, spec.columns)),
        sql.Identifier(LIVE_SCHEMA), sql.Identifier(spec.table),
        sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        sql.SQL(", ").join(order),
        sql.SQL(" LIMIT {}").format(sql.Literal(limit)) if limit is not None else sql.SQL(""),
        sql.SQL(" OFFSET {}").format(sql.Literal(offset)) if offset is not None else sql.SQL(""))
    return query, params


def next_page(conn: psycopg.Connection, name: str, limit: int, *, customer: str | None = None,
              month: str | None = None, after: list[Any] | None = None) -> list[Any] | None:
    """The key values a keyset page of LIMIT rows ends at, when more rows follow it (the next page's cursor)."""
    spec = EXPORTS[name]
    query, params = _query(conn, spec, customer=customer, month=month, after=after, limit=2, offset=limit - 1)
    rows = conn.execute(query, params).fetchall()
    return [_cell(v) for v in rows[0][:len(spec.keys)]] if len(rows) == 2 else None


def check_export(conn: psycopg.Connection, name: str, *, customer: str | None = None,
                 month: str | None = None) -> ExportSpec:
    """The export NAME, refused when unknown, not built yet, or without the column a filter needs."""
    spec = EXPORTS.get(name)
    if spec is None:
        raise NotFoundError(f"unknown export {name!r}; known: {', '.join(sorted(EXPORTS))}")
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{LIVE_SCHEMA}.{spec.table}",)).fetchone()[0]:
        raise NotFoundError(f"export {name!r}: table {LIVE_SCHEMA}.{spec.table} does not exist (run `ledger project`)")
    if customer is not None and "customer_id" not in spec.columns:
        raise ValueError(f"export {name!r} has no customer to filter by")
    if month is not None:
        _month_filter(spec)
    return spec


def export(conn: psycopg.Connection, name: str, fmt: str, out: TextIO) -> int:
    """Writes the read model NAME to OUT as `csv` or `json`; returns the number of rows written."""
    page = ExportPage()
    for text in export_lines(conn, name, fmt, page=page):
        out.write(text)
    return page.rows


@dataclass
class ExportPage:
    """What `export_lines` wrote: its row count, and the last row's key values (a keyset cursor's content)."""

    rows: int = 0
    last_key: list[Any] | None = None


def export_lines(conn: psycopg.Connection, name: str, fmt: str, *, customer: str | None = None,
                 month: str | None = None, after: list[Any] | None = None, limit: int | None = None,
                 page: ExportPage | None = None) -> Iterator[str]:
    """The read model NAME as `csv` or `json` text, piece by piece: optionally one customer's or one month's rows,
    and a keyset page (rows after the key values AFTER, at most LIMIT). PAGE collects the count and last key."""
    spec = EXPORTS.get(name)
    if spec is None:
        raise NotFoundError(f"unknown export {name!r}; known: {', '.join(sorted(EXPORTS))}")
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown format {fmt!r}: csv or json")
    page = page if page is not None else ExportPage()
    keys = len(spec.keys)
    with conn.transaction():
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{LIVE_SCHEMA}.{spec.table}",)).fetchone()[0]
        if not exists:
            raise NotFoundError(f"export {name!r}: table {LIVE_SCHEMA}.{spec.table} does not exist (run `ledger project`)")
        query, params = _query(conn, spec, customer=customer, month=month, after=after, limit=limit)
        with conn.cursor(name="ledger_export") as cur:
            cur.itersize = 10_000
            cur.execute(query, params)
            if fmt == "csv":
                buffer = io.StringIO()
                writer = csv.writer(buffer, lineterminator="\n")
                writer.writerow(spec.columns)
                for row in cur:
                    writer.writerow(["" if v is None else _cell(v) for v in row])
                    page.rows += 1
                    page.last_key = [_cell(v) for v in row[:keys]]
                    if buffer.tell() >= 1 << 16:
                        yield buffer.getvalue()
                        buffer.seek(0)
                        buffer.truncate()
                yield buffer.getvalue()
            else:
                parts = ["["]
                for row in cur:
                    parts.append(",\n" if page.rows else "\n")
                    parts.append(json.dumps(dict(zip(spec.columns, map(_json_cell, row))), ensure_ascii=False))
                    page.rows += 1
                    page.last_key = [_cell(v) for v in row[:keys]]
                    if len(parts) >= 2_000:
                        yield "".join(parts)
                        parts.clear()
                parts.append("\n]\n" if page.rows else "]\n")
                yield "".join(parts)

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
