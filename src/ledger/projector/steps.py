"""Running the declared steps of the read models (models.py): one section, one step, the transient tables."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache

import psycopg
from psycopg import sql

from .models import ReadModel, Step, read_models
from .templates import FULL, STAGE, Scope, Target, _projection_dir, sections

# The scopes of an increment (templates.SCOPED reads them): what the new facts can change.
SCOPE_TABLES = {
    "scope_cm": "customer_id text, month text",
    "scope_cm_posting": "customer_id text, month text",
    "scope_src": "source text, source_customer_id text",
    "scope_inv": "invoice_id text",
    "scope_cust": "customer_id text",
    "relink_source": "source text, source_customer_id text, since timestamptz",
}


def run_section(conn: psycopg.Connection, target: Target, name: str, section: str, options=FULL) -> None:
    """Runs section SECTION of projections/NAME.sql (it must exist: models.py checked every declared one)."""
    conn.execute(target.render(sections(name)[section], options))


def run_step(conn: psycopg.Connection, target: Target, m: ReadModel, step: Step, options) -> None:
    from . import risk  # the forms and month partitions are the Risk views' (risk imports this module)

    if step.forms:
        risk.run_cheaper_form(conn, target, m, step, options)
    elif step.per_month:
        risk.run_per_month(conn, target, m, step, options)
    elif step.section == "analyze" and "analyze" not in sections(m.name):
        analyze(conn, target, m.name, stage=m.group == "stage")
    else:
        run_section(conn, target, m.name, step.section, options)


def run_steps(conn: psycopg.Connection, target: Target, m: ReadModel, steps, options) -> None:
    for step in steps:
        run_step(conn, target, m, step, options)


@lru_cache(maxsize=None)
def stage_tables() -> tuple[str, ...]:
    """Every transient table a run may leave in {stage}: those the projection files name, the scopes, and the
    {stage}.NAME_new of the models refilled as a difference."""
    named = set()
    for path in _projection_dir().glob("*.sql"):
        named |= set(re.findall(r"\{stage\}\.(\w+)", path.read_text()))
    named |= set(SCOPE_TABLES)
    named |= {f"{m.name}_new" for m in read_models() if m.mode == "refill as difference"}
    return tuple(sorted(named))


def drop_stage(conn: psycopg.Connection) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {', '.join(f'{STAGE}.{t}' for t in stage_tables())}")


def create_scopes(conn: psycopg.Connection) -> None:
    for table, columns in SCOPE_TABLES.items():
        conn.execute(f"CREATE TABLE {STAGE}.{table} ({columns}) ON COMMIT DROP")


def analyze_scopes(conn: psycopg.Connection, scopes: dict[str, Scope]) -> None:
    for table in sorted({s.table for s in scopes.values() if s.table in SCOPE_TABLES}):
        conn.execute(f"ANALYZE {STAGE}.{table}")


@contextmanager
def local_settings(conn: psycopg.Connection, **settings: str) -> Iterator[None]:
    """SETTINGS (server parameters) for the statements inside, in the caller's transaction; then as they were."""
    names = list(settings)
    previous = conn.execute("SELECT " + ", ".join(["current_setting(%s)"] * len(names)), names).fetchone()
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))
    yield
    for name, value in zip(names, previous):
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


def coarse_statistics(conn: psycopg.Connection):
    """ANALYZE inside takes a small sample: the joins that follow need row counts and rough distinct counts only.
    (The default sample cost 0.12 s of a 100k-fact increment for its 78k-row stage table.)"""
    return local_settings(conn, default_statistics_target="10")


def probing_joins(conn: psycopg.Connection, probe: bool):
    """PROBE: the joins inside are nested loops, each row of the (small) outer side looking its match up through an
    index of the (large) inner side; PostgreSQL's costs otherwise choose a hash or merge join reading the whole
    inner table. Every join inside must have an index to probe, or it becomes a loop over a whole table."""
    return local_settings(conn, enable_hashjoin="off", enable_mergejoin="off") if probe else nullcontext()


def analyze(conn: psycopg.Connection, target: Target, table: str, stage: bool = False) -> None:
    schema = sql.SQL(STAGE) if stage else sql.Identifier(target.schema)
    with coarse_statistics(conn):
        conn.execute(sql.SQL("ANALYZE {}.{}").format(schema, sql.Identifier(table)))
