"""project, rebuild and check: exactly-once application of the facts to the read models in `ledger_proj`.

Finance's read models and the Risk and Sales views each have a lock (advisory) and a checkpoint of their own, so
that one never waits for the other: concurrent callers of one queue, and the second finds the checkpoint already
at the head and does nothing. Finance's read models and their checkpoint (`ledger_proj.checkpoint`) commit
together. The Risk and Sales views catch up to Finance's checkpoint in a transaction of their own, REPEATABLE
READ: they read Finance's tables (link_range, usage_on_time, period_close, adoption_pending) as of one commit of
Finance's, while Finance goes on applying newer facts beside them. A rebuild or a check holds both locks (Finance's
first). A rebuild fills `ledger_proj_next` and renames it over `ledger_proj` in the same transaction: readers see
the old tables until the commit, and a killed rebuild leaves them serving.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import psycopg
from psycopg import sql

from ledger.settings import Settings

from . import engine
from .build import drop_schema

LIVE_SCHEMA = "ledger_proj"
NEXT_SCHEMA = "ledger_proj_next"
CHECK_SCHEMA = "ledger_proj_check"
LOCK_KEY = 0x6C65646765725F70  # "ledger_p": Finance's read models
RISK_LOCK_KEY = 0x6C65646765725F72  # "ledger_r": the Risk and Sales views


@dataclass(frozen=True)
class ProjectReport:
    """What one run did: the positions it covered (from exclusive, to inclusive) and how long it took."""

    from_position: int
    to_position: int
    facts_applied: int
    seconds: float
    mode: str  # "incremental", "rebuild" or "noop" (of Finance's read models); "risk": the Risk and Sales views alone
    reason: str | None = None  # why a run of `project` rebuilt instead of applying the new facts
    # the Risk and Sales views' own checkpoint when this run brought them from there to to_position (None: they
    # were current, or were left for a later run)
    risk_from_position: int | None = None
    # an incremental run's way through Finance's read models (engine.apply_increment): "additive", "additive+scoped"
    # or "scoped"
    path: str | None = None


def _head_position(conn: psycopg.Connection) -> int:
    """The position every run brings the projections up to: the last position the store has committed.

    Every fact but usage is a row of ledger_events, and so is the event that records each usage batch, at the
    position after its facts and in their transaction: the head is the end of ledger_events' position index.
    (The fact views over ledger_events filter by topic: reading backwards through them for the newest fact of a
    rare kind walks the whole table.) Commit order is position order, so nothing below the head can commit later.
    """
    row = conn.execute("SELECT notification_id FROM ledger_events ORDER BY notification_id DESC LIMIT 1").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _locked(conn: psycopg.Connection, *, risk: bool = False) -> Iterator[Callable[[], psycopg.Connection] | None]:
    """One transaction holding Finance's lock, and with RISK the Risk and Sales views' too (read committed: each
    statement sees the latest commits). Yields a function that opens another connection to the database when the
    transaction is the run's own (every fact it sees is committed, so another connection sees them too), for a
    build to run part of its work beside (build.BESIDE); None inside a caller's transaction."""
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if idle:
            conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        if risk:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (RISK_LOCK_KEY,))
        yield _sibling(conn) if idle else None


def _sibling(conn: psycopg.Connection) -> Callable[[], psycopg.Connection]:
    """Opens a connection with CONN's parameters as libpq used them (the password included, which the connection's
    public info leaves out)."""
    params = {option.keyword.decode(): option.val.decode() for option in conn.pgconn.info if option.val is not None}
    return lambda: psycopg.connect(**{**params, "application_name": "ledger-build-beside"})


@contextmanager
def _risk_locked(conn: psycopg.Connection) -> Iterator[None]:
    """A REPEATABLE READ transaction holding the Risk and Sales views' lock, taken before its snapshot: the snapshot
    sees the checkpoint the previous holder committed. (Inside a caller's transaction: that transaction, and the
    lock until it ends.)"""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (RISK_LOCK_KEY,))
        yield
        return
    # A transaction's snapshot is taken at its first statement, before a lock that statement waits for: the lock
    # is the session's, taken in a transaction of its own first, and released after the commit.
    with conn.transaction():
        conn.execute("SELECT pg_advisory_lock(%s)", (RISK_LOCK_KEY,))
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield
    finally:
        if not conn.closed:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_unlock(%s)", (RISK_LOCK_KEY,))


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.checkpoint",)).fetchone()
    return bool(row[0])


def _checkpoint(conn: psycopg.Connection, schema: str, table: str = "checkpoint") -> int:
    """The position SCHEMA's read models are at (TABLE risk_checkpoint: the Risk and Sales views')."""
    row = conn.execute(sql.SQL("SELECT position FROM {}.{}").format(sql.Identifier(schema),
                                                                    sql.Identifier(table))).fetchone()
    return int(row[0])



def _thresholds(settings: Settings) -> engine.Thresholds:
    return engine.Thresholds(settings.anomaly_score, settings.anomaly_min_units)


def _rebuild_locked(conn: psycopg.Connection, started: float, settings: Settings, reason: str | None = None,
                    beside: Callable[[], psycopg.Connection] | None = None) -> ProjectReport:
    """With Finance's lock held: takes the Risk and Sales views' too (a Risk run in progress finishes first)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (RISK_LOCK_KEY,))
    head = _head_position(conn)
    drop_schema(conn, NEXT_SCHEMA)  # a leftover of an earlier, killed rebuild
    engine.build(conn, NEXT_SCHEMA, head, _thresholds(settings), settings.build_work_mem, beside=beside)
    drop_schema(conn, LIVE_SCHEMA)
    conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
        sql.Identifier(NEXT_SCHEMA), sql.Identifier(LIVE_SCHEMA)))
    applied = engine.count_built_facts(conn, LIVE_SCHEMA, head)
    return ProjectReport(0, head, applied, time.perf_counter() - started, "rebuild", reason)


def _catch_up_risk(conn: psycopg.Connection, head: int, settings: Settings) -> int | None:
    """Brings the Risk and Sales views (their own checkpoint) up to HEAD, Finance's checkpoint; returns the
    checkpoint they were at, or None when they were current."""
    risk_checkpoint = _checkpoint(conn, LIVE_SCHEMA, "risk_checkpoint")
    if head <= risk_checkpoint:
        return None
    engine.apply_risk_increment(conn, LIVE_SCHEMA, risk_checkpoint, head, _thresholds(settings))
    return risk_checkpoint


def project_risk(conn: psycopg.Connection, settings: Settings | None = None) -> ProjectReport:
    """Brings the Risk and Sales views up to Finance's checkpoint, under their own lock only: Finance's runs go on
    beside it."""
    started = time.perf_counter()
    settings = settings or Settings.from_env()
    with _risk_locked(conn):
        if not _schema_exists(conn, LIVE_SCHEMA) or not engine.built_by_current_definitions(conn, LIVE_SCHEMA):
            return ProjectReport(0, 0, 0, time.perf_counter() - started, "risk")  # a Finance run builds them
        finance = _checkpoint(conn, LIVE_SCHEMA)
        risk_from = _catch_up_risk(conn, finance, settings)
    return ProjectReport(finance if risk_from is None else risk_from, finance, 0, time.perf_counter() - started,
                         "risk", risk_from_position=risk_from)


def project(conn: psycopg.Connection, settings: Settings | None = None, *, risk: bool = True) -> ProjectReport:
    """Applies every fact after the checkpoint exactly once; the first run builds the projections from 0.

    `risk=False` brings only Finance's read models up to date (what exports and traces of them need); the
    Risk and Sales views (adoption, anomalies) catch up, from their own checkpoint, on the next run with risk.
    """
    started = time.perf_counter()
    settings = settings or Settings.from_env()
    with _locked(conn) as beside:
        if not _schema_exists(conn, LIVE_SCHEMA):
            return _rebuild_locked(conn, started, settings, "no read models yet", beside)
        if not engine.built_by_current_definitions(conn, LIVE_SCHEMA):
            return _rebuild_locked(conn, started, settings,
                                   "the projection files changed since the read models were built", beside)
        checkpoint = _checkpoint(conn, LIVE_SCHEMA)
        head = _head_position(conn)
        report = ProjectReport(checkpoint, checkpoint, 0, 0.0, "noop")
        if head > checkpoint:
            new = engine.count_new_facts(conn, checkpoint, head)
            path = engine.apply_increment(conn, LIVE_SCHEMA, checkpoint, head, new, _thresholds(settings))
            report = ProjectReport(checkpoint, head, new.total, 0.0, "incremental" if new.total else "noop",
                                   path=path if new.total else None)
    risk_from = project_risk(conn, settings).risk_from_position if risk else None
    return ProjectReport(report.from_position, report.to_position, report.facts_applied,
                         time.perf_counter() - started, report.mode, risk_from_position=risk_from,
                         path=report.path)


def rebuild(conn: psycopg.Connection, settings: Settings | None = None) -> ProjectReport:
    """Recomputes every projection from position 0 into new tables and swaps them in atomically."""
    started = time.perf_counter()
    settings = settings or Settings.from_env()
    with _locked(conn) as beside:
        return _rebuild_locked(conn, started, settings, beside=beside)


def table_checksum(conn: psycopg.Connection, schema: str, table: str) -> str:
    """An order-independent checksum of a table's rows (md5 over the rows' text, sorted bytewise)."""
    query = sql.SQL(
        "SELECT md5(coalesce(string_agg(r, E'\\n' ORDER BY r COLLATE \"C\"), '')) "
        "FROM (SELECT t::text AS r FROM {}.{} t) s"
    ).format(sql.Identifier(schema), sql.Identifier(table))
    return conn.execute(query).fetchone()[0]


def check(conn: psycopg.Connection, settings: Settings | None = None) -> dict[str, dict[str, object]]:
    """Rebuilds up to the live checkpoint into a scratch schema and compares every table's checksum."""
    settings = settings or Settings.from_env()
    with _locked(conn, risk=True) as beside:
        if not _schema_exists(conn, LIVE_SCHEMA):
            return {}
        checkpoint = _checkpoint(conn, LIVE_SCHEMA)
        _catch_up_risk(conn, checkpoint, settings)  # compare every table at one position
        drop_schema(conn, CHECK_SCHEMA)
        engine.build(conn, CHECK_SCHEMA, checkpoint, _thresholds(settings), settings.build_work_mem, beside=beside)
        result: dict[str, dict[str, object]] = {}
        for table in engine.TABLES:
            live = table_checksum(conn, LIVE_SCHEMA, table)
            fresh = table_checksum(conn, CHECK_SCHEMA, table)
            result[table] = {"incremental": live, "rebuild": fresh, "equal": live == fresh}
        drop_schema(conn, CHECK_SCHEMA)
        return result
