"""`ledger trace invoice ID` and `ledger trace customer C --month M`: every fact behind a number."""

from __future__ import annotations

import sys

import orjson
import typer

from ledger.cli.output import escape_text, terminal_safe
from ledger.cli.runtime import fail, id_argument, month_argument, store, store_line
from ledger.errors import LedgerError

app = typer.Typer()
trace_app = typer.Typer(name="trace", no_args_is_help=True, help="Trace a number back to its facts.")
app.add_typer(trace_app)
EVENT_HEADERS = ("position", "event_id", "source:source_customer_id", "event_time", "units")
SAMPLE = 1_000  # the facts that set the column widths of a streamed --events listing


def _dump(value) -> str:
    return orjson.dumps(value, default=str).decode()


@trace_app.command("invoice")
def trace_invoice_command(
    invoice_id: str = typer.Argument(..., help="the invoice's invoice_id"),
    as_json: bool = typer.Option(False, "--json", help="print the trace (or the refusal) as one JSON object"),
    events: bool = typer.Option(False, "--events", help="list every contributing usage fact (streamed)"),
) -> None:
    """The invoice, its customer's resolution, each line with its facts, credits, adjustments, exceptions."""
    from ledger import projector
    from ledger.audit.render import render_invoice
    from ledger.audit.trace import contributing_facts, trace_invoice

    try:
        id_argument(invoice_id, "INVOICE_ID")
        with store() as db, db.connection() as conn:
            projector.project(conn, db.settings, risk=False)
            trace = trace_invoice(conn, invoice_id)
            if as_json and not events:
                sys.stdout.write(orjson.dumps(trace, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
                return
            if as_json:
                _stream_json(conn, trace, contributing_facts)
                return
            print(store_line(db, conn))
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
    """Each usage line's facts as aligned columns, streamed: the first facts set the widths, longer cells are cut."""
    from itertools import islice

    from ledger.cli.output import Columns, count

    for line, customer, period, usage in _usage_lines(trace):
        print(f"\nline {escape_text(line['line_id'])} ({line['meter']}): contributing usage facts")
        digest = n = 0
        facts = contributing_facts(conn, customer, period, line["meter"], usage["first_position"],
                                   usage["last_position"], usage["source_ids"])

        def row(fact):
            nonlocal digest, n
            digest ^= fact["h"]
            n += 1
            return (fact["position"], fact["event_id"], f"{fact['source']}:{fact['source_customer_id']}",
                    fact["event_time"].isoformat(), fact["units"])

        sample = [row(f) for f in islice(facts, SAMPLE)]
        columns = Columns(EVENT_HEADERS, sample, indent="  ")
        print(columns.header())
        print(columns.rule())
        for cells in sample:
            print(columns.line(cells))
        for fact in facts:
            print(columns.line(row(fact)))
        ok = f"{digest & 0xFFFFFFFFFFFFFFFF:016x}" == usage["digest"]
        print(f"  {count(n, 'fact')}; digest recomputed from them {'matches' if ok else 'DOES NOT MATCH'} "
              f"{usage['digest']}")


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
    customer_id: str = typer.Argument(..., help="the customer's customer_id"),
    month: str = typer.Option(..., "--month", help="the month, YYYY-MM (UTC)"),
    as_json: bool = typer.Option(False, "--json", help="print the trace (or the refusal) as one JSON object"),
) -> None:
    """A customer-month: usage by meter, invoices, credits, adjustments, attribute version."""
    from ledger import projector
    from ledger.audit.render import render_customer_month
    from ledger.audit.trace import trace_customer_month

    try:
        id_argument(customer_id, "CUSTOMER_ID")
        month_argument(month)
        with store() as db, db.connection() as conn:
            projector.project(conn, db.settings, risk=False)
            trace = trace_customer_month(conn, customer_id, month)
            where, currency = store_line(db, conn), db.settings.currency
    except LedgerError as error:
        fail(error)
    if as_json:
        sys.stdout.write(orjson.dumps(trace, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    print(where)
    print(render_customer_month(terminal_safe(trace), currency))
