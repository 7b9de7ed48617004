"""Test fixtures for the projector: a throwaway database holding the fact relations as plain tables.

The fact relations follow docs/fact-relations.md (the contract). `load_example` replays a shared example
scenario (`steps.json`) with a minimal ingest of its own: every accepted fact of one ingest is appended
in file order, duplicates and quarantined records are not appended, period closes and credits are facts
at their step positions. It stands in for the real ingest until that exists, so it validates only what
the shared example exercises.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import psycopg
from psycopg import sql

ADMIN_DSN = os.environ.get("LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
EXAMPLES = Path(os.environ.get("LEDGER_SHARED", "/work/shared")) / "examples"

FACT_DDL = """
-- the store's events table as far as the projector reads it: every fact but a usage fact is one of its rows
CREATE TABLE ledger_events (notification_id bigint PRIMARY KEY);
CREATE TABLE usage_facts (position bigint PRIMARY KEY, event_id text NOT NULL, source text NOT NULL,
    source_customer_id text NOT NULL, meter text NOT NULL, quantity bigint NOT NULL,
    event_time timestamptz NOT NULL);
CREATE INDEX usage_facts_source_idx ON usage_facts (source, source_customer_id);
CREATE TABLE identity_link_facts (position bigint PRIMARY KEY, source text NOT NULL,
    source_customer_id text NOT NULL, customer_id text NOT NULL, effective_from timestamptz NOT NULL);
CREATE TABLE attribute_facts (position bigint PRIMARY KEY, customer_id text NOT NULL,
    effective_from timestamptz NOT NULL, attrs jsonb NOT NULL);
CREATE TABLE price_facts (position bigint PRIMARY KEY, plan text NOT NULL, effective_month text NOT NULL,
    base_fee_cents bigint NOT NULL, meters jsonb NOT NULL);
CREATE TABLE invoice_facts (position bigint PRIMARY KEY, invoice_id text NOT NULL, source text NOT NULL,
    source_customer_id text NOT NULL, period text NOT NULL, issued_at timestamptz NOT NULL,
    currency text NOT NULL, total_cents bigint NOT NULL);
CREATE TABLE invoice_line_facts (position bigint NOT NULL, invoice_id text NOT NULL, line_no int NOT NULL,
    line_id text NOT NULL, kind text NOT NULL, meter text, quantity bigint, amount_cents bigint NOT NULL,
    PRIMARY KEY (invoice_id, line_no));
CREATE TABLE credit_facts (position bigint PRIMARY KEY, credit_id text NOT NULL, customer_id text NOT NULL,
    invoice_id text, amount_cents bigint NOT NULL, reason text NOT NULL, memo text, actor text NOT NULL,
    issued_at timestamptz NOT NULL);
CREATE TABLE period_close_facts (position bigint PRIMARY KEY, month text NOT NULL, actor text NOT NULL,
    closed_at timestamptz NOT NULL);
"""


# ---------------------------------------------------------------------------------------------- databases
@contextmanager
def scratch_database(prefix: str = "proj_dev_test") -> Iterator[str]:
    """A fresh database with the fact relations; dropped afterwards. Yields its conninfo."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(ADMIN_DSN, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(FACT_DDL)
        yield dsn
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---------------------------------------------------------------------------------------------- the store
@dataclass
class FakeStore:
    """Appends facts with consecutive positions, in memory first; `flush` writes them."""

    position: int = 0
    rows: dict[str, list[tuple]] = field(default_factory=dict)
    usage_keys: dict[tuple, tuple] = field(default_factory=dict)
    link_keys: dict[tuple, tuple] = field(default_factory=dict)
    attr_keys: dict[tuple, tuple] = field(default_factory=dict)
    price_keys: dict[tuple, tuple] = field(default_factory=dict)
    invoices: dict[str, dict] = field(default_factory=dict)
    credits: dict[str, tuple] = field(default_factory=dict)
    links: list[tuple] = field(default_factory=list)  # (source, scid, customer, effective_from)
    customers: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)

    def append(self, table: str, *values: Any) -> int:
        self.position += 1
        self.rows.setdefault(table, []).append((self.position, *values))
        return self.position

    def flush(self, conn: psycopg.Connection) -> None:
        for table, rows in self.rows.items():
            if not rows:
                continue
            width = len(rows[0])
            q = sql.SQL("INSERT INTO {} VALUES ({})").format(
                sql.Identifier(table), sql.SQL(", ").join(sql.Placeholder() * width)
            )
            with conn.cursor() as cur:
                cur.executemany(q, rows)
                if table not in ("usage_facts", "invoice_line_facts"):
                    cur.executemany("INSERT INTO ledger_events VALUES (%s)", [(row[0],) for row in rows])
        self.rows = {}

    def resolve(self, source: str, scid: str, at: dt.datetime) -> str | None:
        best = None
        for s, c, cust, eff in self.links:
            if s == source and c == scid and eff <= at and (best is None or eff > best[0]):
                best = (eff, cust)
        return best[1] if best else None


@dataclass
class StepResult:
    read: int = 0
    appended: int = 0
    duplicates: int = 0
    quarantined: int = 0


# ---------------------------------------------------------------------------------------------- parsing
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_METER = re.compile(r"^[a-z0-9_]{1,64}$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class Rejected(ValueError):
    pass


def parse_ts(value: Any) -> dt.datetime:
    if not isinstance(value, str) or not _TS.match(value):
        raise Rejected(f"bad timestamp {value!r}")
    if "." in value:  # truncate to the microsecond
        m = re.match(r"^(.*?\.)(\d+)(Z|[+-]\d{2}:\d{2})$", value)
        value = m.group(1) + m.group(2)[:6].ljust(6, "0") + m.group(3)
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    except ValueError as e:
        raise Rejected(str(e)) from e


def _int(value: Any, lo: int = 0, hi: int = 2**53) -> int:
    if isinstance(value, str):
        if not re.fullmatch(r"-?\d+", value):
            raise Rejected(f"bad integer {value!r}")
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value < hi:
        raise Rejected(f"bad integer {value!r}")
    return value


def _str(value: Any, max_len: int = 1_000_000) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise Rejected(f"bad string {value!r}")
    return value


def read_records(path: Path, fmt: str) -> Iterator[Any]:
    """Yields a dict per record, or a Rejected for an unparsable one."""
    text = path.read_text()
    if fmt == "csv":
        for row in csv.DictReader(io.StringIO(text)):
            yield {k: (None if v == "" else v) for k, v in row.items()}
        return
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            yield Rejected("not JSON")
            continue
        yield obj if isinstance(obj, dict) else Rejected("not an object")


def _check_fields(rec: dict, allowed: set[str]) -> None:
    unknown = set(rec) - allowed
    if unknown:
        raise Rejected(f"unknown fields {sorted(unknown)}")


# ---------------------------------------------------------------------------------------------- kinds
def _usage(rec: dict, fmt: str) -> tuple:
    if fmt == "cloudevents":
        if rec.get("specversion") != "1.0":
            raise Rejected("not a CloudEvent 1.0")
        data = rec.get("data")
        qty = data.get("quantity", 1) if isinstance(data, dict) else 1
        rec = {"event_id": rec.get("id"), "source": rec.get("source"),
               "source_customer_id": rec.get("subject"), "meter": rec.get("type"),
               "quantity": qty, "event_time": rec.get("time")}
    _check_fields(rec, {"event_id", "source", "source_customer_id", "meter", "quantity", "event_time",
                        "properties"})
    meter = _str(rec.get("meter"))
    if not _METER.match(meter):
        raise Rejected("bad meter")
    return (_str(rec.get("event_id"), 128), _str(rec.get("source")), _str(rec.get("source_customer_id")),
            meter, _int(rec.get("quantity")), parse_ts(rec.get("event_time")))


def ingest(store: FakeStore, kind: str, path: Path, fmt: str = "ndjson") -> StepResult:
    res = StepResult()
    for rec in read_records(path, fmt):
        res.read += 1
        try:
            if isinstance(rec, Rejected):
                raise rec
            outcome = _ingest_one(store, kind, rec, fmt)
        except Rejected:
            res.quarantined += 1
            continue
        if outcome == "dup":
            res.duplicates += 1
        else:
            res.appended += 1
    return res


def _keyed(store_keys: dict, key: tuple, payload: tuple) -> str | None:
    if key in store_keys:
        if store_keys[key] == payload:
            return "dup"
        raise Rejected("conflicts with an earlier fact")
    store_keys[key] = payload
    return None


def _ingest_one(store: FakeStore, kind: str, rec: dict, fmt: str) -> str:
    if kind == "usage":
        u = _usage(rec, fmt)
        if _keyed(store.usage_keys, (u[1], u[0]), u):
            return "dup"
        store.append("usage_facts", *u)
    elif kind == "identities":
        _check_fields(rec, {"source", "source_customer_id", "customer_id", "effective_from"})
        v = (_str(rec.get("source")), _str(rec.get("source_customer_id")), _str(rec.get("customer_id")),
             parse_ts(rec.get("effective_from")))
        if _keyed(store.link_keys, (v[0], v[1], v[3]), v):
            return "dup"
        store.append("identity_link_facts", *v)
        store.links.append(v)
        store.customers.add(v[2])
    elif kind == "attributes":
        names = ("name", "segment", "owner", "plan", "region")
        _check_fields(rec, {"customer_id", "effective_from", *names})
        attrs = {k: rec[k] for k in names if k in rec}
        v = (_str(rec.get("customer_id")), parse_ts(rec.get("effective_from")), json.dumps(attrs))
        if _keyed(store.attr_keys, (v[0], v[1]), v):
            return "dup"
        store.append("attribute_facts", *v)
        store.customers.add(v[0])
    elif kind == "prices":
        _check_fields(rec, {"plan", "effective_month", "base_fee_cents", "meters"})
        month = _str(rec.get("effective_month"))
        if not _MONTH.match(month):
            raise Rejected("bad month")
        v = (_str(rec.get("plan")), month, _int(rec.get("base_fee_cents")), json.dumps(rec.get("meters") or {}))
        if _keyed(store.price_keys, (v[0], v[1]), v):
            return "dup"
        store.append("price_facts", *v)
    elif kind == "invoices":
        return _invoice(store, rec)
    elif kind == "credits":
        return _credit(store, rec)
    else:
        raise ValueError(kind)
    return "appended"


def _invoice(store: FakeStore, rec: dict) -> str:
    _check_fields(rec, {"invoice_id", "source", "source_customer_id", "period", "issued_at", "currency",
                        "total_cents", "lines"})
    if rec.get("currency") != "USD":
        raise Rejected("currency")
    inv_id = _str(rec.get("invoice_id"))
    if inv_id in store.invoices:
        if store.invoices[inv_id] == rec:
            return "dup"
        raise Rejected("conflict")
    issued = parse_ts(rec.get("issued_at"))
    pos = store.append("invoice_facts", inv_id, _str(rec["source"]), _str(rec["source_customer_id"]),
                       _str(rec["period"]), issued, "USD", _int(rec["total_cents"], -2**62, 2**62))
    for n, line in enumerate(rec["lines"], start=1):
        store.rows.setdefault("invoice_line_facts", []).append(
            (pos, inv_id, n, line["line_id"], line["kind"], line.get("meter"), line.get("quantity"),
             line["amount_cents"]))
    store.invoices[inv_id] = rec
    return "appended"


def _credit(store: FakeStore, rec: dict) -> str:
    cid = _str(rec.get("credit_id"))
    issued = parse_ts(rec.get("issued_at"))
    args = (rec.get("customer_id"), rec.get("invoice_id"), rec.get("amount_cents"), rec.get("reason"),
            rec.get("memo"), rec.get("actor"), issued)
    if cid in store.credits:
        if store.credits[cid] == args:
            return "dup"
        raise Rejected("key reused")
    customer, invoice_id, amount, reason, memo, actor, _ = args
    if not actor:
        raise Rejected("missing actor")
    if customer not in store.customers:
        raise Rejected("unknown customer")
    amount = _int(amount, 1, 2**62)
    if invoice_id is not None:
        inv = store.invoices.get(invoice_id)
        if inv is None:
            raise Rejected("unknown invoice")
        if store.resolve(inv["source"], inv["source_customer_id"], parse_ts(inv["issued_at"])) != customer:
            raise Rejected("invoice of another customer")
        already = sum(a[2] for a in store.credits.values() if a[1] == invoice_id)
        if amount > inv["total_cents"] - already:
            raise Rejected("exceeds invoice")
    store.credits[cid] = args
    store.append("credit_facts", cid, customer, invoice_id, amount, reason, memo, actor, issued)
    return "appended"


def close_period(store: FakeStore, month: str, actor: str, closed_at: dt.datetime | None = None) -> bool:
    """Appends PeriodClosed(month) unless already closed (no clock checks: history replay)."""
    if month in store.closed:
        return False
    store.closed.add(month)
    store.append("period_close_facts", month, actor, closed_at or dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc))
    return True


# ---------------------------------------------------------------------------------------------- scenario
def example_steps(name: str = "basic") -> list[dict]:
    return json.loads((EXAMPLES / name / "input" / "steps.json").read_text())


def apply_step(store: FakeStore, step: dict, example: str = "basic") -> StepResult | None:
    """Applies one step of steps.json to the in-memory store; refused steps return None."""
    base = EXAMPLES / example / "input"
    if step["op"] == "ingest":
        default = "csv" if step["file"].endswith(".csv") else "ndjson"
        return ingest(store, step["kind"], base / step["file"], step.get("format", default))
    if step["op"] == "close":
        close_period(store, step["month"], step["actor"])
        return StepResult(appended=1)
    if step["op"] == "close_refused":
        return None
    raise ValueError(step["op"])


def load_example(conn: psycopg.Connection, example: str = "basic") -> list[StepResult | None]:
    """Loads a whole example scenario into the fact relations of `conn`'s database."""
    store = FakeStore()
    results = [apply_step(store, step, example) for step in example_steps(example)]
    store.flush(conn)
    conn.commit()
    return results


def expected_csv(name: str, example: str = "basic") -> str:
    return (EXAMPLES / example / "expected" / f"{name}.csv").read_text()
