"""The demo's calculations chapter (SPEC §3.8, §4.6, §6.2), told to a Finance user: a customer whose plan changed
mid-month is priced on its month-start plan; a prorating calculation is defined, compared line by line with the one
in force, promoted; the closed months it would have priced differently are restated, never rewritten.

Run again on the same home, every command finds its fact already appended (nothing new) and the chapter shows the
same restatements.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from ledger.store.database import Database

NAME, RULE = "prorated", "daily_prorated"
ACTOR = "fin.pricing@example.com"
NOTE = "prorate mid-month plan changes by day"
REASON = "Finance approved proration of mid-month plan changes"


def _cents(value: int | None, signed: bool = False) -> str:
    return "" if value is None else (f"{value:+,} cents" if signed else f"{value:,} cents")


def show_calculations(db: Database, conn: psycopg.Connection, ui: Any, highlights: dict, *, now: datetime) -> None:
    """Define, diff and promote the prorating calculation, then show what it restated."""
    from ledger import projector
    from ledger.commands.calculations import define_calculation, known_calculations, promote_calculation
    from ledger.domain.calculations import DefineCalculation, PromoteCalculation
    from ledger.ingest.records import RecordContext
    from ledger.projector.calc_diff import diff

    change = (highlights.get("plan_changes") or [None])[0]
    month = change["effective_from"][:7] if change else None
    ui.say(f"\n== Calculations: how units become cents, tried beside the one in force and promoted")
    if change:
        row = conn.execute("SELECT plan, expected_cents, calculation FROM ledger_proj.customer_month"
                           " WHERE customer_id = %s AND month = %s", (change["customer_id"], month)).fetchone()
        if row:
            ui.say(f"   {change['customer_id']} moved from {change['from']} to {change['to']} on "
                   f"{change['effective_from'][:16].replace('T', ' ')} UTC; its {month} was priced by "
                   f"{row[2]} on the month-start plan {row[0]}: expected {_cents(row[1])}, and the month is closed")

    ctx = RecordContext("ledger calc define", now, db.settings.currency)
    defined = define_calculation(conn, DefineCalculation(NAME, RULE, ACTOR, NOTE), now=now, ctx=ctx)
    ui.say(f"   ledger calc define {NAME} --plan-rule {RULE}: "
           + (f"defined at position {defined.position} by {ACTOR}" if defined.created
              else "already defined, nothing appended"))

    known = known_calculations(conn)
    if known.in_force == NAME:
        ui.say(f"   ledger calc diff {NAME}: {NAME} is in force already, so it differs from nothing; its promotion's "
               "restatements follow")
    else:
        head = projector.project(conn, db.settings, risk=False).to_position
        result = diff(conn, in_force=(known.in_force, known.rules[known.in_force]), candidate=(NAME, RULE), head=head)
        summary = result.summary()
        by_month = ", ".join(f"{m} {_cents(c, True)}" for m, c in summary["difference_cents_by_month"].items())
        ui.say(f"   ledger calc diff {NAME} (changes nothing): {summary['lines']} lines of {summary['customers']} "
               f"customers would change; by month: {by_month or 'none'}")
        mine = [r for r in result.rows if change and r[0] == change["customer_id"]] or result.rows[:4]
        if mine:
            ui.say(ui.table(["customer", "month", "line", "status", "in force", "candidate", "difference"],
                            [(c, m, k or "base fee", s, _cents(a), _cents(b), _cents(d, True))
                             for c, m, k, s, a, b, d in mine]))

    ctx = RecordContext("ledger calc promote", now, db.settings.currency)
    promoted = promote_calculation(conn, PromoteCalculation(NAME, ACTOR, REASON), now=now, ctx=ctx)
    ui.say(f"   ledger calc promote {NAME}: "
           + (f"in force from position {promoted.position}, by {ACTOR} ({REASON!r})" if promoted.created
              else "in force already, nothing appended"))
    projector.project(conn, db.settings, risk=False)
    _restatements(conn, ui, change)


def _restatements(conn: psycopg.Connection, ui: Any, change: dict | None) -> None:
    count, customers, total = conn.execute(
        "SELECT count(*), count(DISTINCT customer_id), coalesce(sum(amount_cents), 0) FROM ledger_proj.restatements"
        " WHERE cause = 'recalculation'").fetchone()
    ui.say(f"   closed months stay as they were at their close: the differences post as {count} recalculation "
           f"restatements of {customers} customers to the earliest open month, {_cents(total, True)} in all "
           "(`ledger export restatements`)")
    if not change:
        return
    rows = conn.execute(
        "SELECT original_month, meter, posting_month, cause, amount_cents, first_position FROM ledger_proj.restatements"
        " WHERE customer_id = %s ORDER BY original_month, posting_month, cause, meter", (change["customer_id"],)
    ).fetchall()
    if rows:
        ui.say(ui.table(["restated month", "line", "posted to", "cause", "amount", "at position"],
                        [(m, k or "base fee", p, c, _cents(a, True), pos) for m, k, p, c, a, pos in rows]))
        ui.say(f"   ledger trace customer {change['customer_id']} --month {rows[0][0]}: the calculation that priced "
               "it, and each restatement with the fact that caused it")
