"""`ledger period close M --actor A`: append PeriodClosed once; refused while the month runs or an earlier one is open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ledger.domain.commands import ClosePeriod, decide_close
from ledger.domain.facts import PERIOD_CLOSE
from ledger.ingest.records import RecordContext
from ledger.store import queries
from ledger.store.appender import append_batch


@dataclass(frozen=True)
class CloseResult:
    month: str
    position: int
    actor: str
    closed_at: Any
    created: bool  # False: the month was closed already; nothing appended


def close_period(conn: psycopg.Connection, command: ClosePeriod, *, now: datetime, ctx: RecordContext) -> CloseResult:
    for _ in range(3):
        closed = queries.closed_months(conn)
        payload = decide_close(command, now=now, closed=set(closed), months_with_usage=queries.months_with_usage(conn))
        if payload is None:
            first = closed[command.month]
            return CloseResult(command.month, first["position"], first["actor"], first["closed_at"], created=False)
        candidate = ctx.candidate(PERIOD_CLOSE, payload, None, "", provenance={})
        outcome = append_batch(conn, PERIOD_CLOSE, [candidate], source_file=ctx.source_file,
                                   quarantine_conflicts=False)
        if outcome.appended:
            return CloseResult(command.month, outcome.appended[0][1], command.actor or "", payload["closed_at"],
                               created=True)
        # closed by someone else between our read and our append: report theirs
    closed = queries.closed_months(conn)[command.month]
    return CloseResult(command.month, closed["position"], closed["actor"], closed["closed_at"], created=False)
