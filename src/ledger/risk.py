"""The risk views read for people: `ledger anomalies`, the flagged usage spikes, newest first.

The numbers come from the `anomalies` read model (projections/anomalies.sql: one row per customer x UTC day x meter
whose units are flagged against the customer's own 28-day baseline); this module only selects and labels them,
adding the customer's segment and owner from the SCD2 dimension `dim_customer` (the version in effect now).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg import sql

from ledger.errors import NotFoundError

SCHEMA = "ledger_proj"  # the live projection schema (ledger.projector.LIVE_SCHEMA)
HEADERS = ("day", "customer_id", "segment", "owner", "meter", "units", "baseline_units", "score")


@dataclass(frozen=True)
class Anomaly:
    """One flagged customer-day-meter, labelled for a Risk analyst."""

    day: dt.date
    customer_id: str
    segment: str | None
    owner: str | None
    meter: str
    units: int
    baseline_units: Decimal
    score: Decimal

    def cells(self) -> tuple[str, ...]:
        """The row as printed, in HEADERS order (an empty cell for a missing attribute)."""
        return (self.day.isoformat(), self.customer_id, self.segment or "", self.owner or "", self.meter,
                f"{self.units:,}", _plain(self.baseline_units), f"{self.score:.2f}")

    def as_dict(self) -> dict:
        """The row for JSON: numbers as numbers (an integral median as an integer)."""
        median = self.baseline_units
        return {"day": self.day.isoformat(), "customer_id": self.customer_id, "segment": self.segment,
                "owner": self.owner, "meter": self.meter, "units": self.units,
                "baseline_units": int(median) if median == median.to_integral_value() else float(median),
                "score": float(self.score)}


@dataclass(frozen=True)
class Thresholds:
    """The thresholds the flags were computed with (LEDGER_ANOMALY_SCORE, LEDGER_ANOMALY_MIN_UNITS)."""

    score: Decimal
    min_units: int


def _require(conn: psycopg.Connection, table: str) -> None:
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{table}",)).fetchone()[0]
    if not exists:
        raise NotFoundError(f"table {SCHEMA}.{table} does not exist (run `ledger project`)")


def list_anomalies(conn: psycopg.Connection, *, now: dt.datetime, since: dt.date | None = None) -> list[Anomaly]:
    """The flagged rows on or after SINCE, newest day first (then highest score), with segment and owner at NOW."""
    _require(conn, "anomalies")
    _require(conn, "dim_customer")
    query = sql.SQL(
        "SELECT a.day, a.customer_id, d.segment, d.owner, a.meter, a.units, a.baseline_units, a.score "
        "FROM {schema}.anomalies a "
        "LEFT JOIN {schema}.dim_customer d "
        "       ON d.customer_id = a.customer_id AND d.valid_from <= %(now)s "
        "      AND (d.valid_to IS NULL OR %(now)s < d.valid_to) "
        "WHERE %(since)s::date IS NULL OR a.day >= %(since)s::date "
        "ORDER BY a.day DESC, a.score DESC, a.customer_id COLLATE \"C\", a.meter COLLATE \"C\""
    ).format(schema=sql.Identifier(SCHEMA))
    rows = conn.execute(query, {"now": now, "since": since}).fetchall()
    return [Anomaly(*row) for row in rows]


def thresholds(conn: psycopg.Connection) -> Thresholds | None:
    """The thresholds the current flags were computed with (None before the first projection)."""
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.anomaly_threshold",)).fetchone()[0]:
        return None
    row = conn.execute(sql.SQL("SELECT score, min_units FROM {}.anomaly_threshold").format(
        sql.Identifier(SCHEMA))).fetchone()
    return Thresholds(row[0], int(row[1])) if row else None


def parse_day(text: str) -> dt.date:
    """A UTC day written YYYY-MM-DD (what `--since` takes); ValueError otherwise."""
    if len(text) == 10:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"not a day {text!r}: expected YYYY-MM-DD")


def caption(limits: Thresholds | None, since: dt.date | None) -> str:
    """The line above the table: what is flagged, and from which day."""
    text = "usage spikes against each customer's own 28-day baseline"
    if limits is not None:
        text += f" (flagged: score >= {_plain(limits.score)}, units >= {limits.min_units:,})"
    if since is not None:
        text += f", since {since.isoformat()}"
    return text


def _plain(value: Decimal) -> str:
    """A decimal as written by a person: 6 rather than 6.0, 12.5 as is."""
    return format(value.normalize(), "f")
