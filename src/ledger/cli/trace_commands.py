"""`ledger trace invoice ID` and `ledger trace customer C --month M`."""

from __future__ import annotations

import re
import sys

import orjson
import typer

from ledger.cli.main import database, fail, trace_app
from ledger.errors import LedgerError


def _dump(value) -> str:
    return orjson.dumps(value, default=str).decode()


# What a terminal would interpret instead of showing: C0 and C1 controls (escape sequences, carriage returns,
# bells), DEL, and the bidirectional marks, embeddings, overrides and isolates that reorder what is shown.
_INTERPRETED = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_text(text: str) -> str:
    """The text with every character a terminal would interpret written as its escape (`\\x1b`, `\\u202e`)."""
    return _INTERPRETED.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                            else f"\\u{ord(m.group()):04x}", text)


def terminal_safe(value):
    """A copy of a trace with every string escaped for a terminal (text output; JSON stays as stored)."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {k: terminal_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [terminal_safe(v) for v in value]
    return value


@trace_app.command("invoice")
def trace_invoice_command(
    invoice_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
    events: bool = typer.Option(False, "--events", help="list every contributing usage fact (streamed)"),
) -> None:
    """The invoice, its customer's resolution, each line with its facts, credits, adjustments, exceptions."""
    from ledger import projector
    from ledger.audit.trace import contributing_facts, render_invoice, trace_invoice

    try:
        with database() as db, db.connection() as conn:
            projector.project(conn, db.settings, risk=False)
            trace = trace_invoice(conn, invoice_id)
            if as_json and not events:
                sys.stdout.write(orjson.dumps(trace, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
                return
            if as_json:
                _stream_json(conn, trace, contributing_facts)
                return
            print(render_invoice(terminal_safe(trace)))
            if events:
                _print_events(conn, trace, contributing_facts)
    except LedgerError as error:
        fail(error)


def _usage_lines(trace):
    customer, period = trace["invoice"]["customer_id"], trace["invoice"]["period"]
    for line in trace["lines"]:
        usage = line["usage"]
        if usage and usage.get("first_position") is not None:
            yield line, customer, period, usage


def _print_events(conn, trace, contributing_facts) -> None:
    for line, customer, period, usage in _usage_lines(trace):
        print(f"\nline {escape_text(line['line_id'])} ({line['meter']}): contributing usage facts")
        print("  position  event_id  source:source_customer_id  event_time  units")
        digest = 0
        for fact in contributing_facts(conn, customer, period, line["meter"], usage["first_position"],
                                       usage["last_position"], usage["source_ids"]):
            digest ^= fact["h"]
            e, s, c = (escape_text(fact[k]) for k in ("event_id", "source", "source_customer_id"))
            print(f"  {fact['position']}  {e}  {s}:{c}  "
                  f"{fact['event_time'].isoformat()}  {fact['units']}")
        ok = f"{digest & 0xFFFFFFFFFFFFFFFF:016x}" == usage["digest"]
        print(f"  digest recomputed from these facts {'matches' if ok else 'DOES NOT MATCH'} {usage['digest']}")


def _stream_json(conn, trace, contributing_facts) -> None:
    """The trace as JSON with each usage line's events streamed inside it (flat memory)."""
    out = sys.stdout
    out.write('{"invoice": ' + _dump(trace["invoice"]))
    for key in ("resolution", "attribute_version", "credits", "late_adjustments", "pricing", "restatements",
                "exceptions"):
        out.write(f', "{key}": ' + _dump(trace[key]))
    out.write(', "lines": [')
    for i, line in enumerate(trace["lines"]):
        out.write((", " if i else "") + _dump({k: v for k, v in line.items()})[:-1] + ', "events": [')
        usage = line["usage"]
        if usage and usage.get("first_position") is not None:
            for j, fact in enumerate(contributing_facts(conn, trace["invoice"]["customer_id"],
                                                        trace["invoice"]["period"], line["meter"],
                                                        usage["first_position"], usage["last_position"],
                                                        usage["source_ids"])):
                fact.pop("h")
                out.write((", " if j else "") + _dump(fact))
        out.write("]}")
    out.write("]}\n")


@trace_app.command("customer")
def trace_customer_command(
    customer_id: str = typer.Argument(...),
    month: str = typer.Option(..., "--month", help="YYYY-MM"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A customer-month: usage by meter, invoices, credits, adjustments, attribute version."""
    from ledger import projector
    from ledger.audit.trace import render_pricing, trace_customer_month

    try:
        with database() as db, db.connection() as conn:
            projector.project(conn, db.settings, risk=False)
            trace = trace_customer_month(conn, customer_id, month)
    except LedgerError as error:
        fail(error)
    if as_json:
        sys.stdout.write(orjson.dumps(trace, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    trace, customer_id, month = terminal_safe(trace), escape_text(customer_id), escape_text(month)
    cm = trace["customer_month"]
    print(f"customer {customer_id}  month {month}  plan {cm['plan']}  segment {cm['segment']}  owner {cm['owner']}")
    print(f"  usage {cm['usage_units']} units; expected {cm['expected_cents']}; invoiced {cm['invoiced_cents']}; "
          f"credits {cm['credits_cents']}; late adjustments {cm['late_adjustment_cents']}; restatements "
          f"{cm['restatement_cents']}; balance "
          f"{cm['balance_cents']}; variance {cm['variance_cents']}")
    for u in trace["usage"]:
        print(f"  {u['meter']:<16} on time {u.get('on_time_units', 0)} units in {u['fact_count']} facts "
              f"(positions {u['first_position']}–{u['last_position']}, digest {u['digest']}), late "
              f"{u.get('late_units', 0)}, billed {u.get('billed_units', 0)}")
    for i in trace["invoices"]:
        print(f"  invoice {i['invoice_id']} total {i['total_cents']} (position {i['position']})")
    for c in trace["credits"]:
        print(f"  credit {c['credit_id']} {c['amount_cents']} cents {c['reason']} by {c['actor']}")
    for a in trace["late_adjustments"]:
        print(f"  late {a['original_month']} {a['meter']} → {a['posting_month']}: {a['units']} units "
              f"{a['amount_cents']} cents")
    for e in trace["exceptions"]:
        print(f"  exception {e['kind']} {e.get('meter') or ''} difference {e['difference']}")
    for line in render_pricing(trace["pricing"], trace["restatements"]):
        print(f"  {line}")
