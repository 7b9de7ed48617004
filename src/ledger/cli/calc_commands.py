"""`ledger calc define|promote|diff|list`: Finance's calculations (SPEC §3.8, §6.2)."""

from __future__ import annotations

import csv
import sys
from typing import Optional

import typer

from ledger.cli.runtime import choice_argument, fail, now, store, store_line
from ledger.errors import LedgerError
from ledger.logging import get_logger

app = typer.Typer()
calc_app = typer.Typer(name="calc", no_args_is_help=True, help="Calculations: how units become cents, tried and "
                                                                "promoted.")
app.add_typer(calc_app)


@calc_app.command("define")
def calc_define(
    name: str = typer.Argument(..., help="the calculation's name: 1-64 of a-z 0-9 _ . -"),
    plan_rule: str = typer.Option(..., "--plan-rule", help="month_start | daily_prorated"),
    actor: Optional[str] = typer.Option(None, "--actor", help="the person who defines it (required)"),
    note: Optional[str] = typer.Option(None, "--note", help="what the calculation is for"),
    as_json: bool = typer.Option(False, "--json", help="print the result (or the refusal) as one JSON object"),
) -> None:
    """Define a calculation; defining it again with the same rule appends nothing."""
    from ledger.cli.output import emit_json
    from ledger.commands.calculations import define_calculation
    from ledger.domain.calculations import DefineCalculation
    from ledger.ingest.records import RecordContext

    try:
        with store() as db, db.connection() as conn:
            moment = now()
            result = define_calculation(conn, DefineCalculation(name, plan_rule, actor, note), now=moment,
                                        ctx=RecordContext("ledger calc define", moment, db.settings.currency))
    except LedgerError as error:
        get_logger().info("calculation_define_refused", name=name, rule=getattr(error, "rule", None), actor=actor)
        fail(error)
    get_logger().info("calculation_defined" if result.created else "calculation_already_defined", name=name,
                      plan_rule=result.plan_rule, position=result.position, actor=actor)
    if as_json:
        emit_json({"name": name, "plan_rule": result.plan_rule, "position": result.position,
                   "created": result.created, "appended": 1 if result.created else 0})
    elif result.created:
        print(f"defined {name} ({result.plan_rule}) at position {result.position:,} by {actor}")
    else:
        where = f"at position {result.position:,}" if result.position is not None else "by every store"
        print(f"{name} is already defined with {result.plan_rule} {where}; nothing appended")


@calc_app.command("promote")
def calc_promote(
    name: str = typer.Argument(..., help="a defined calculation"),
    actor: Optional[str] = typer.Option(None, "--actor", help="the person who promotes it (required)"),
    reason: Optional[str] = typer.Option(None, "--reason", help="why it replaces the one in force (required)"),
    as_json: bool = typer.Option(False, "--json", help="print the result (or the refusal) as one JSON object"),
) -> None:
    """Put a calculation in force from now on; closed months are restated, never rewritten."""
    from ledger.cli.output import emit_json
    from ledger.commands.calculations import promote_calculation
    from ledger.domain.calculations import PromoteCalculation
    from ledger.ingest.records import RecordContext

    try:
        with store() as db, db.connection() as conn:
            moment = now()
            result = promote_calculation(conn, PromoteCalculation(name, actor, reason), now=moment,
                                         ctx=RecordContext("ledger calc promote", moment, db.settings.currency))
    except LedgerError as error:
        get_logger().info("calculation_promote_refused", name=name, rule=getattr(error, "rule", None), actor=actor)
        fail(error)
    get_logger().info("calculation_promoted" if result.created else "calculation_already_in_force", name=name,
                      position=result.position, actor=actor)
    if as_json:
        emit_json({"name": name, "plan_rule": result.plan_rule, "position": result.position,
                   "created": result.created, "appended": 1 if result.created else 0})
    elif result.created:
        print(f"promoted {name} ({result.plan_rule}) at position {result.position:,} by {actor}; closed months'"
              " differences post as recalculation restatements (`ledger export restatements`)")
    else:
        print(f"{name} is already in force; nothing appended")


@calc_app.command("diff")
def calc_diff(
    name: str = typer.Argument(..., help="a defined calculation to compare with the one in force"),
    format: str = typer.Option("csv", "--format", help="csv | json"),
) -> None:
    """What promoting NAME now would change, line by line (CSV or JSON); changes nothing. Summary on stderr."""
    from ledger import projector
    from ledger.cli.output import count, emit_json
    from ledger.commands.calculations import known_calculations
    from ledger.domain.calculations import require_defined
    from ledger.projector.calc_diff import COLUMNS, diff

    try:
        choice_argument(format, "--format", ("csv", "json"))
        with store() as db, db.connection() as conn:
            known = known_calculations(conn)
            rule = require_defined(name, known)
            report = projector.project(conn, db.settings, risk=False)
            result = diff(conn, in_force=(known.in_force, known.rules[known.in_force]), candidate=(name, rule),
                          head=report.to_position)
            currency = db.settings.currency
    except LedgerError as error:
        fail(error)
    if format == "json":
        emit_json([dict(zip(COLUMNS, row)) for row in result.rows])
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(result.rows)
    summary = result.summary()
    by_month = ", ".join(f"{m} {c:+,} {currency} cents" for m, c in summary["difference_cents_by_month"].items())
    print(f"calc diff {name} against {result.in_force} (in force): {count(summary['lines'], 'line')}, "
          f"{count(summary['customers'], 'customer')}; difference by month: {by_month or 'none'}", file=sys.stderr)


@calc_app.command("list")
def calc_list(as_json: bool = typer.Option(False, "--json", help="print the listing (or the refusal) as JSON")) -> None:
    """Definitions and promotions, with position, actor, time and reason or note."""
    from ledger.cli.output import emit_json, table
    from ledger.commands.calculations import list_calculations

    try:
        with store() as db, db.connection() as conn:
            listing = list_calculations(conn)
            where = store_line(db, conn)
    except LedgerError as error:
        fail(error)
    if as_json:
        emit_json(listing)
        return
    print(where)
    print(f"in force: {listing['in_force']}\n\ndefinitions")
    print(table(["name", "plan rule", "position", "actor", "defined at", "note"],
                [(d["name"], d["plan_rule"], d["position"] or "-", d["actor"] or "-", d["defined_at"] or "-",
                  d["note"] or "") for d in listing["definitions"]]))
    print("\npromotions")
    print(table(["name", "plan rule", "position", "actor", "promoted at", "reason"],
                [(p["name"], p["plan_rule"], p["position"], p["actor"], p["promoted_at"], p["reason"])
                 for p in listing["promotions"]]) if listing["promotions"] else "none: v1 has been in force throughout")
