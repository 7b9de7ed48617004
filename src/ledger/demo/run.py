"""`ledger demo`: a generated scenario replayed end to end through the handlers the CLI uses, then shown.

The scenario is replayed as of its own dates: each step's `at` is the `now` its handler sees (an ingest's
recorded time, a close's closed_at, a credit's issued_at), so closes obey the period rules and credits post
to the month they were issued in. Every date must lie in the past. Files go to LEDGER_HOME/demo/seed-N.

Running it again on the same home replays the same scenario (same seed, same bytes, same file paths): every
record is a duplicate, closes are already closed, credits are idempotent repeats, and nothing is appended.
That is the least surprising choice: the numbers a user has explored stay put, and the second run shows
idempotency at work. Facts can never be removed, so the demo refuses a store holding anything else (another
seed's demo, or real facts).
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import psycopg

from ledger import errors
from ledger.demo.generate import Scenario, ScenarioParams, scenario
from ledger.domain.time import parse_timestamp
from ledger.settings import Settings
from ledger.store.database import Database

DEMO = ScenarioParams(customers=300, start_month="2026-01", months=4, events_per_customer_month=125,
                      source_systems=3, seed=7)
FIRST_FILE = "prices.ndjson"  # the scenario's first ingest: its path marks a store as holding this demo
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class DemoUI:
    """How the demo talks: a line printer, a table renderer and a progress bar factory (given by the CLI)."""

    say: Callable[[str], None]
    table: Callable[[Sequence[str], Iterable[Sequence[Any]]], str]
    progress: Callable[[str, int | None], AbstractContextManager[Progress]]


@dataclass
class DemoResult:
    scenario: Scenario
    appended: int = 0
    read: int = 0
    quarantined: int = 0
    surprises: list[str] = field(default_factory=list)  # steps whose outcome differed from the scenario's expectation
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def replayed(self) -> bool:
        """True when the store held the scenario already: nothing new was appended."""
        return self.read > 0 and self.appended == 0


def run_demo(db: Database, ui: DemoUI, *, now: datetime, params: ScenarioParams = DEMO) -> DemoResult:
    """Generate, replay, project and show; returns what happened (the CLI exits non-zero on surprises)."""
    started = time.perf_counter()
    directory = db.settings.home / "demo" / f"seed-{params.seed}"
    params = replace(params, currency=db.settings.currency)
    with db.connection() as conn:
        _refuse_a_store_of_other_facts(conn, directory)
        generated = _generate(directory, params, ui)
        last = parse_timestamp(generated.steps[-1]["at"])
        if last > now:
            raise errors.ConfigurationError(f"the demo scenario runs until {last:%Y-%m-%d}, after now "
                                            f"({now:%Y-%m-%d}): choose an earlier start month")
        result = DemoResult(generated, seconds={"generate": generated.seconds})
        _replay(db, conn, ui, result)
        _project(conn, ui, result, db.settings)
        _calculations(db, conn, ui, result, now)
        _show(conn, ui, result, db.settings.currency)
    result.seconds["total"] = time.perf_counter() - started
    _explore(ui, db, result)
    return result


def _generate(directory: Path, params: ScenarioParams, ui: DemoUI) -> Scenario:
    # written beside, then swapped in: an interrupted run never leaves half a scenario where the next looks
    staging = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    generated = scenario(staging, params)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    generated.directory = directory
    totals = generated.totals()
    ui.say(f"== A generated scenario: {totals['customers']} customers, {params.start_month} + {params.months} months, "
           f"{params.source_systems} source systems (seed {params.seed})")
    ui.say(f"   {totals['usage_events']:,} usage events ({totals['late_events']:,} late) in {totals['files']} files, "
           f"{totals['duplicates']:,} duplicates, {totals['malformed']:,} malformed records, "
           f"{totals['invoices']:,} invoices, {totals['credits']} credit commands; "
           f"written to {directory} in {generated.seconds:.1f}s")
    return generated


def _refuse_a_store_of_other_facts(conn: psycopg.Connection, directory: Path) -> None:
    """Facts can never be removed: the demo appends only to an empty store or to one holding this very demo."""
    row = conn.execute("SELECT ledger_state(state) ->> 'recorded_from' FROM ledger_events"
                       " ORDER BY notification_id LIMIT 1").fetchone()
    if row is None or row[0] == str(directory / FIRST_FILE):
        return
    raise errors.ConfigurationError(
        f"this store already holds other facts (the first came from {row[0]}); the demo appends invented facts "
        "that can never be removed: run it on a fresh LEDGER_HOME without LEDGER_DATABASE_URL"
        + (", or with the seed of the demo it holds" if "/demo/seed-" in (row[0] or "") else ""))


# -- the replay ----------------------------------------------------------------------------------------
def _replay(db: Database, conn: psycopg.Connection, ui: DemoUI, result: DemoResult) -> None:
    started = time.perf_counter()
    steps = result.scenario.steps
    ui.say(f"\n== Replaying {len(steps)} steps as of their own dates (ingest, close, credit: the CLI's handlers)")
    credits: list[tuple[dict, str, str]] = []
    for step in steps:
        if step["op"] != "credit" and credits:
            _say_credits(ui, credits, db.settings.currency)
            credits = []
        if step["op"] == "ingest":
            _ingest(db, ui, result, step)
        elif step["op"] in ("close", "close_refused"):
            _close(conn, db, ui, result, step)
        elif step["op"] == "credit":
            credits.append((step, *_credit(conn, db, result, step)))
    if credits:
        _say_credits(ui, credits, db.settings.currency)
    result.seconds["replay"] = time.perf_counter() - started
    ui.say(f"   {_count(result.read, 'record')} read, {_count(result.appended, 'fact')} appended, "
           f"{result.quarantined:,} quarantined, in {result.seconds['replay']:.1f} s")
    if result.replayed:
        ui.say("   nothing new: this home already holds the demo scenario, so every record was a duplicate, every "
               "close was already done and every credit an idempotent repeat. The numbers below are unchanged.")


def _ingest(db: Database, ui: DemoUI, result: DemoResult, step: dict) -> None:
    from ledger.commands.ingest import ingest_file

    path = result.scenario.directory / step["file"]
    at = parse_timestamp(step["at"])
    with ui.progress(f"ingest {step['kind']}", path.stat().st_size) as progress:
        report = ingest_file(db, step["kind"], str(path), step.get("format"), now=at, progress=progress)
    result.read += report.read
    result.appended += report.appended
    result.quarantined += report.quarantined
    ui.say(f"{at:%Y-%m-%d} {step['kind']} from {step['file']} ({report.format}): read "
           f"{_count(report.read, 'record')}, appended {_count(report.appended, 'fact')}, "
           f"{_count(report.duplicates, 'duplicate')}, {_count(report.conflicts, 'conflict')}, "
           f"{report.quarantined:,} quarantined ({report.events_per_second:,.0f} records/s)")


def _close(conn: psycopg.Connection, db: Database, ui: DemoUI, result: DemoResult, step: dict) -> None:
    from ledger.commands.periods import close_period
    from ledger.domain.commands import ClosePeriod
    from ledger.ingest.records import RecordContext

    at = parse_timestamp(step["at"])
    ctx = RecordContext("ledger period close", at, db.settings.currency)
    try:
        closed = close_period(conn, ClosePeriod(step["month"], step["actor"]), now=at, ctx=ctx)
    except errors.CommandRefusedError as refusal:
        if step["op"] != "close_refused":
            result.surprises.append(f"close {step['month']}: {refusal}")
        ui.say(f"{at:%Y-%m-%d} period close {step['month']}: {refusal}"
               f"{' (as the scenario intends)' if step['op'] == 'close_refused' else ''}")
        return
    if step["op"] == "close_refused" and closed.created:
        result.surprises.append(f"close {step['month']} was accepted, the scenario expected a refusal")
    result.appended += closed.created
    verb = "closed" if closed.created else "already closed, nothing appended"
    ui.say(f"{at:%Y-%m-%d} period close {step['month']}: {verb} (position {closed.position}, by {closed.actor})")


def _credit(conn: psycopg.Connection, db: Database, result: DemoResult, step: dict) -> tuple[str, str]:
    """Issue one credit; returns (outcome, detail) where outcome is issued, repeat or refused."""
    from ledger.commands.credits import issue_credit
    from ledger.domain.commands import IssueCredit
    from ledger.ingest.records import RecordContext

    at = parse_timestamp(step["at"])
    command = IssueCredit(step["customer"], step["amount_cents"], step["reason"], step["actor"],
                          step["idempotency_key"], step.get("invoice"), step.get("memo"))
    try:
        credit = issue_credit(conn, command, now=at, ctx=RecordContext("ledger credit issue", at, db.settings.currency),
                              provenance={"issued_by": step["actor"]})
    except errors.CommandRefusedError as refusal:
        outcome, detail = "refused", str(refusal)
    else:
        result.appended += credit.created
        outcome, detail = ("issued" if credit.created else "repeat"), ""
    # on a second run of the demo every issued credit comes back as a repeat: that is expected too
    if outcome != step.get("expect", outcome) and not (outcome == "repeat" and step.get("expect") == "issued"):
        result.surprises.append(f"credit {step['idempotency_key']}: {outcome}, expected {step['expect']}")
    return outcome, detail


def _say_credits(ui: DemoUI, credits: list[tuple[dict, str, str]], currency: str) -> None:
    at = parse_timestamp(credits[0][0]["at"])
    counts = Counter(outcome for _, outcome, _ in credits)
    cents = sum(step["amount_cents"] for step, outcome, _ in credits if outcome == "issued")
    parts = [f"{counts['issued']} issued ({cents:,} {currency} cents)"] if counts["issued"] else []
    if counts["repeat"]:
        parts.append(f"{counts['repeat']} idempotent repeat{'s' * (counts['repeat'] > 1)} (nothing appended)")
    if counts["refused"]:
        parts.append(f"{counts['refused']} refused")
    ui.say(f"{at:%Y-%m-%d} credits: {', '.join(parts)}")
    for step, outcome, detail in credits:
        if outcome == "refused":
            ui.say(f"           {step['idempotency_key']}: {detail}")


# -- projections and what they say ---------------------------------------------------------------------
CUSTOMER_MONTH = "ledger_proj.customer_month"
EXCEPTIONS = "ledger_proj.exceptions"
CUSTOMER_MONTH_COLUMNS = ("customer_id", "month", "plan", "usage_units", "expected_cents", "invoiced_cents",
                          "credits_cents", "late_adjustment_cents", "balance_cents", "variance_cents")


def _project(conn: psycopg.Connection, ui: DemoUI, result: DemoResult, settings: Settings) -> None:
    from ledger import projector

    started = time.perf_counter()
    report = projector.project(conn, settings)
    result.seconds["project"] = time.perf_counter() - started
    applied = getattr(report, "facts_applied", None)
    ui.say(f"\n== Projections brought up to date: {_count(applied or 0, 'fact')} applied in "
           f"{result.seconds['project']:.1f} s")


def _calculations(db: Database, conn: psycopg.Connection, ui: DemoUI, result: DemoResult, now: datetime) -> None:
    from ledger.demo.calculations import show_calculations

    started = time.perf_counter()
    show_calculations(db, conn, ui, result.scenario.highlights, now=now)
    result.seconds["calculations"] = time.perf_counter() - started


def _show(conn: psycopg.Connection, ui: DemoUI, result: DemoResult, currency: str) -> None:
    started = time.perf_counter()
    _customer_months(conn, ui, currency)
    _exceptions(conn, ui, currency)
    _trace(conn, ui, result)
    result.seconds["show"] = time.perf_counter() - started


def _money(cents: Any) -> str:
    """Cents for a person: integer cents with thousands separators (the table names the currency once)."""
    return "-" if cents is None else f"{cents:,}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _customer_months(conn: psycopg.Connection, ui: DemoUI, currency: str) -> None:
    rows = conn.execute(
        f"SELECT {', '.join(CUSTOMER_MONTH_COLUMNS)} FROM {CUSTOMER_MONTH}"
        " ORDER BY balance_cents DESC NULLS LAST, customer_id, month LIMIT 10").fetchall()
    count, customers, months = conn.execute(
        f"SELECT count(*), count(DISTINCT customer_id), count(DISTINCT month) FROM {CUSTOMER_MONTH}").fetchone()
    ui.say(f"\n== Customer-months: {_count(count, 'row')} ({_count(customers, 'customer')} × "
           f"{_count(months, 'month')}); the top 10 by balance (invoiced − credits + late adjustments + "
           f"restatements); usage in units, every amount in {currency} cents")
    ui.say(ui.table(["customer", "month", "plan", "usage units", "expected", "invoiced", "credits", "late adj.",
                     "balance", "variance"],
                    [(c, m, plan, f"{units:,}", *(_money(v) for v in money)) for c, m, plan, units, *money in rows]))


def _exceptions(conn: psycopg.Connection, ui: DemoUI, currency: str) -> None:
    """Exceptions by kind: differences are summed within a kind and its unit only (cents and units never mix)."""
    rows = conn.execute(f"SELECT kind, unit, count(*), sum(difference) FROM {EXCEPTIONS} GROUP BY kind, unit"
                        " ORDER BY kind, unit").fetchall()
    ui.say(f"\n== Exceptions for reconciliation: {_count(sum(r[2] for r in rows), 'exception')} in all; each kind's "
           "differences summed in its own unit")
    ui.say(ui.table(["kind", "count", "Σ difference (actual − expected)", "unit"],
                    [(kind, f"{n:,}", f"{total:+,}", f"{currency} cents" if unit == "cents" else unit)
                     for kind, unit, n, total in rows]))


def _trace(conn: psycopg.Connection, ui: DemoUI, result: DemoResult) -> None:
    from ledger.audit.render import render_invoice
    from ledger.audit.trace import trace_invoice

    invoice_id = result.scenario.highlights.get("trace_invoice")
    reason = result.scenario.highlights.get("trace_reason", "")
    ui.say(f"\n== One invoice traced back to its facts: {invoice_id}{f' ({reason})' if reason else ''}")
    ui.say(render_invoice(trace_invoice(conn, invoice_id)))


def _explore(ui: DemoUI, db: Database, result: DemoResult) -> None:
    home = "" if db.settings.database_url else f"LEDGER_HOME={db.settings.home} "
    invoice = result.scenario.highlights.get("trace_invoice", "ID")
    merge = result.scenario.highlights.get("merge", {})
    seconds = result.seconds
    ui.say(f"\n== Explore further{' (with ' + home.strip() + ')' if home else ''}")
    for command, why in (
        ("ledger export customer-month", "every customer-month: usage, expected, invoiced, credits, balance"),
        ("ledger export late-adjustments", "late usage posted to the earliest open month"),
        ("ledger export restatements", "closed months' changes from back-dated facts and promotions"),
        ("ledger calc list", "calculations defined and promoted: who, when, why"),
        ("ledger export exceptions", "what reconciliation must look at"),
        ("ledger export dim-customer", "attribute history (SCD2), incl. a back-dated change"),
        (f"ledger trace invoice {invoice}", "an invoice back to the usage facts behind each line"),
        ("ledger quarantine list", "every rejected record, with file, line and reason"),
        ("ledger verify", "recompute the hash chain, the usage batches' digests and every projection"),
    ):
        ui.say(f"  {command:<44} {why}")
    if merge:
        ui.say(f"  (a merge moved {merge['source']}/{merge['source_customer_id']} from {merge['from_customer']} to "
               f"{merge['to_customer']} on {merge['effective_from'][:10]})")
    ui.say(f"\ndemo done in {seconds['total']:.1f}s (generate {seconds['generate']:.1f}s, replay "
           f"{seconds.get('replay', 0):.1f}s, project {seconds.get('project', 0):.1f}s, calculations "
           f"{seconds.get('calculations', 0):.1f}s, "
           f"show {seconds.get('show', 0):.1f}s)")
    if result.surprises:
        ui.say(f"{len(result.surprises)} step(s) did not go as the scenario expected:")
        for surprise in result.surprises:
            ui.say(f"  {surprise}")
