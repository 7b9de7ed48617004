"""Scenarios replayed through the real commands, in process: the example scenarios kept in the repository
(`tests/fixtures/examples`, copies of Finance's shared examples) and any facts a test writes itself.

Every fact goes the way `ledger` sends it: records are written to a file and read by `ingest_file`, credits of a
history file through the credit rule, period closes through `close_period`. Nothing writes a fact table directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from ledger.commands.calculations import CalcResult, define_calculation, promote_calculation
from ledger.commands.ingest import IngestReport, ingest_file
from ledger.commands.periods import CloseResult, close_period
from ledger.domain.calculations import DefineCalculation, PromoteCalculation
from ledger.domain.commands import ClosePeriod
from ledger.errors import CommandRefusedError
from ledger.ingest.records import RecordContext
from ledger.settings import Settings
from ledger.store.database import Database

EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "examples"


def example_dir(example: str = "basic") -> Path:
    return EXAMPLES / example


def example_steps(example: str = "basic") -> list[dict]:
    return json.loads((EXAMPLES / example / "input" / "steps.json").read_text())


def expected_steps(example: str = "basic") -> list[dict]:
    return json.loads((EXAMPLES / example / "expected" / "expected_steps.json").read_text())


def expected_csv(name: str, example: str = "basic") -> str:
    return (EXAMPLES / example / "expected" / f"{name}.csv").read_text()


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class StepOutcome:
    """What one step did, in the terms of `expected_steps.json`."""

    exit: int
    appended: int
    report: IngestReport | None = None
    close: CloseResult | None = None
    calc: CalcResult | None = None
    refusal: CommandRefusedError | None = None


class Replay:
    """Feeds steps and records to one database through the real ingest and commands."""

    def __init__(self, database_url: str, work_dir: Path, example: str = "basic"):
        self.database = Database(Settings(database_url=database_url, home=work_dir / "home"))
        self.work_dir, self.example = work_dir, example
        self.files = 0

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the example's steps -------------------------------------------------------------------------------
    def step(self, step: dict) -> StepOutcome:
        """One step of the example's steps.json, as `ledger` runs it."""
        op = step["op"]
        if op == "ingest":
            path = EXAMPLES / self.example / "input" / step["file"]
            report = ingest_file(self.database, step["kind"], str(path), step.get("format"), now=now())
            return StepOutcome(report.exit_code, report.appended, report=report)
        if op in ("close", "close_refused"):
            try:
                result = self.close_month(step["month"], step["actor"], now())
            except CommandRefusedError as refusal:
                return StepOutcome(refusal.exit_code, 0, refusal=refusal)
            return StepOutcome(0, 1 if result.created else 0, close=result)
        if op in ("calc_define", "calc_define_refused", "calc_promote", "calc_promote_refused"):
            try:
                if op.startswith("calc_define"):
                    result = self.define(step["name"], step["plan_rule"], step.get("actor"), step.get("note"))
                else:
                    result = self.promote(step["name"], step.get("actor"), step.get("reason"))
            except CommandRefusedError as refusal:
                return StepOutcome(refusal.exit_code, 0, refusal=refusal)
            return StepOutcome(0, 1 if result.created else 0, calc=result)
        if op == "calc_diff":  # changes nothing: the caller compares its output (ledger.projector.calc_diff)
            return StepOutcome(0, 0)
        raise ValueError(f"step {step!r}: the replay knows ingest, close, calc_define, calc_promote and calc_diff "
                         "(and their refusals) only")

    def steps(self, steps: list[dict] | None = None) -> list[StepOutcome]:
        return [self.step(step) for step in (example_steps(self.example) if steps is None else steps)]

    # -- a test's own records ------------------------------------------------------------------------------
    def ingest(self, kind: str, records: list[dict[str, Any]], name: str | None = None) -> IngestReport:
        """Appends records of one kind through `ingest_file`, from an NDJSON file in the work directory (NAME, or
        one numbered in order); every record must be appended."""
        self.files += 1
        path = self.work_dir / (name or f"{self.files:05d}-{kind}.ndjson")
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
        report = ingest_file(self.database, kind, str(path), "ndjson", now=now())
        if report.appended != len(records):
            with self.database.connection() as conn:
                reasons = conn.execute("SELECT line_number, reason FROM quarantine WHERE source_file = %s",
                                       (report.file,)).fetchall()
            raise AssertionError(f"{path.name}: {report.appended} of {len(records)} {kind} records appended "
                                 f"({report.duplicates} duplicates, quarantined: {reasons})")
        return report

    def define(self, name: str, plan_rule: str, actor: str | None, note: str | None = None) -> CalcResult:
        """`ledger calc define NAME --plan-rule RULE --actor A [--note TEXT]`."""
        at = now()
        with self.database.connection() as conn:
            return define_calculation(conn, DefineCalculation(name, plan_rule, actor, note), now=at,
                                      ctx=RecordContext("ledger calc define", at, self.database.settings.currency))

    def promote(self, name: str, actor: str | None, reason: str | None) -> CalcResult:
        """`ledger calc promote NAME --actor A --reason R`."""
        at = now()
        with self.database.connection() as conn:
            return promote_calculation(conn, PromoteCalculation(name, actor, reason), now=at,
                                       ctx=RecordContext("ledger calc promote", at, self.database.settings.currency))

    def close_month(self, month: str, actor: str, at: datetime) -> CloseResult:
        with self.database.connection() as conn:
            return close_period(conn, ClosePeriod(month, actor), now=at,
                                ctx=RecordContext("ledger period close", at, self.database.settings.currency))


def head_position(conn: psycopg.Connection) -> int:
    """The last position in the store (usage rows included)."""
    row = conn.execute("SELECT greatest((SELECT max(position) FROM usage_facts),"
                       " (SELECT max(notification_id) FROM ledger_events))").fetchone()
    return int(row[0] or 0)
