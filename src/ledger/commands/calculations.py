"""`ledger calc define|promote|list|diff`: calculations (SPEC §3.8, §6.2).

A definition is keyed by its name: defining it again with the same rule finds the first (nothing appended), with
another rule is refused. Promotions form one stream, each the next version of it: two promotions decided at once
race for that version, and the loser decides again against what stands.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ledger import errors
from ledger.domain.calculations import (
    Calculations, DefineCalculation, PromoteCalculation, decide_define, decide_promote,
)
from ledger.domain.facts import CALC_DEFINED, CALC_PROMOTED, INITIAL_CALCULATION, NAMESPACE
from ledger.ingest.records import RecordContext
from ledger.store.appender import StreamVersionConflict, append_batch

PROMOTIONS_STREAM = uuid.uuid5(NAMESPACE, "calc_promotions")
MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class CalcResult:
    name: str
    plan_rule: str
    position: int | None  # the fact appended, or the standing one (None: v1, which no fact defines)
    created: bool          # False: nothing appended (defined or in force already)


def known_calculations(conn: psycopg.Connection) -> Calculations:
    """Every defined name's rule, the calculation in force at the head, and the promotions stream's version."""
    rules = dict([INITIAL_CALCULATION])
    rules.update(dict(conn.execute("SELECT name, plan_rule FROM calculation_defined_facts ORDER BY position")))
    row = conn.execute("SELECT name, sequence FROM calculation_promoted_facts ORDER BY position DESC LIMIT 1"
                       ).fetchone()
    return Calculations(rules, row[0] if row else INITIAL_CALCULATION[0], int(row[1]) if row else 0)


def define_calculation(conn: psycopg.Connection, command: DefineCalculation, *, now: datetime,
                       ctx: RecordContext) -> CalcResult:
    for _ in range(MAX_ATTEMPTS):
        payload = decide_define(command, known=known_calculations(conn), now=now)
        if payload is None:
            return CalcResult(command.name, command.plan_rule, _defined_at(conn, command.name), created=False)
        outcome = append_batch(conn, CALC_DEFINED, [ctx.candidate(CALC_DEFINED, payload, None, "", provenance={})],
                               source_file=ctx.source_file, quarantine_conflicts=False)
        if outcome.appended:
            return CalcResult(command.name, command.plan_rule, outcome.appended[0][1], created=True)
        # defined by someone else between our read and our append: decide again against theirs
    raise errors.CommandRefusedError(f"gave up after {MAX_ATTEMPTS} concurrent retries; nothing was appended")


def promote_calculation(conn: psycopg.Connection, command: PromoteCalculation, *, now: datetime,
                        ctx: RecordContext) -> CalcResult:
    for attempt in range(MAX_ATTEMPTS):
        known = known_calculations(conn)
        payload = decide_promote(command, known=known, now=now)
        if payload is None:
            return CalcResult(command.name, known.rules[command.name], _promoted_at(conn), created=False)
        candidate = ctx.candidate(CALC_PROMOTED, payload, None, "", provenance={})
        candidate.stream_id = PROMOTIONS_STREAM.bytes
        candidate.version = payload["sequence"]
        try:
            outcome = append_batch(conn, CALC_PROMOTED, [candidate], source_file=ctx.source_file,
                                   quarantine_conflicts=False)
        except StreamVersionConflict:
            time.sleep(0.002 * (attempt % 10))
            continue
        if outcome.appended:
            return CalcResult(command.name, payload["plan_rule"], outcome.appended[0][1], created=True)
    raise errors.CommandRefusedError(f"gave up after {MAX_ATTEMPTS} concurrent retries; nothing was appended")


def _defined_at(conn: psycopg.Connection, name: str) -> int | None:
    row = conn.execute("SELECT min(position) FROM calculation_defined_facts WHERE name = %s", (name,)).fetchone()
    return row[0] if row else None


def _promoted_at(conn: psycopg.Connection) -> int | None:
    row = conn.execute("SELECT max(position) FROM calculation_promoted_facts").fetchone()
    return row[0] if row else None


def list_calculations(conn: psycopg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Definitions and promotions, in position order, with who, when and why (v1 first, defined by no fact)."""
    name, rule = INITIAL_CALCULATION
    definitions = [{"name": name, "plan_rule": rule, "position": None, "actor": None, "defined_at": None,
                    "note": "every store starts with it in force"}]
    definitions += [dict(zip(("name", "plan_rule", "position", "actor", "defined_at", "note"), row)) for row in
                    conn.execute("SELECT name, plan_rule, position, actor, defined_at, note"
                                 " FROM calculation_defined_facts ORDER BY position")]
    promotions = [dict(zip(("name", "plan_rule", "position", "actor", "promoted_at", "reason"), row)) for row in
                  conn.execute("SELECT name, plan_rule, position, actor, promoted_at, reason"
                               " FROM calculation_promoted_facts ORDER BY position")]
    return {"definitions": definitions, "promotions": promotions, "in_force": known_calculations(conn).in_force}
