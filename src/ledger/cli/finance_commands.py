"""Finance's commands: `ledger credit issue` and `ledger period close` (validated, idempotent, attributed)."""

from __future__ import annotations

from typing import Optional

import typer

from ledger.cli.runtime import fail, id_argument, now, store
from ledger.errors import LedgerError
from ledger.logging import get_logger

app = typer.Typer()
credit_app = typer.Typer(name="credit", no_args_is_help=True, help="Finance's credits.")
period_app = typer.Typer(name="period", no_args_is_help=True, help="Period closes.")
app.add_typer(credit_app)
app.add_typer(period_app)
JSON_HELP = "print the result (or the refusal) as one JSON object"


@credit_app.command("issue")
def credit_issue(
    customer: str = typer.Option(..., "--customer", help="the customer_id credited"),
    amount_cents: int = typer.Option(..., "--amount-cents", help="the credit in cents of the ledger's currency (> 0)"),
    reason: str = typer.Option(..., "--reason", help="late_usage | service_issue | goodwill | billing_error | other"),
    idempotency_key: str = typer.Option(..., "--idempotency-key", help="the credit's id: a retry with the same key "
                                                                       "and arguments returns the first credit"),
    actor: Optional[str] = typer.Option(None, "--actor", help="the person issuing the credit (required)"),
    invoice: Optional[str] = typer.Option(None, "--invoice", help="the invoice credited against (its remainder "
                                                                  "bounds the credit)"),
    memo: Optional[str] = typer.Option(None, "--memo", help="a free-text note kept with the credit"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Issue a credit: validated, idempotent, attributed to its actor."""
    from ledger.cli.output import cents, emit_json
    from ledger.commands.credits import issue_credit
    from ledger.domain.commands import IssueCredit
    from ledger.ingest.records import RecordContext

    try:
        id_argument(customer, "--customer")
        if invoice is not None:
            id_argument(invoice, "--invoice")
        command = IssueCredit(customer, amount_cents, reason, actor, idempotency_key, invoice, memo)
        with store() as db, db.connection() as conn:
            moment = now()
            result = issue_credit(conn, command, now=moment,
                                  ctx=RecordContext("ledger credit issue", moment, db.settings.currency),
                                  provenance={"issued_by": actor})
            currency = db.settings.currency
    except LedgerError as error:
        get_logger().info("credit_refused", rule=getattr(error, "rule", None), customer_id=customer,
                          idempotency_key=idempotency_key, actor=actor)
        fail(error)
    get_logger().info("credit_issued" if result.created else "credit_repeated", position=result.position,
                      credit_id=idempotency_key, amount_cents=amount_cents, actor=actor)
    credit = {k: result.credit.get(k) for k in ("credit_id", "customer_id", "invoice_id", "amount_cents", "reason",
                                                "memo", "actor", "issued_at")}
    if as_json:
        emit_json({**credit, "position": result.position, "created": result.created})
    else:
        verb = "issued" if result.created else "already issued (idempotent repeat; nothing appended)"
        print(f"credit {credit['credit_id']} {verb}: {cents(credit['amount_cents'])} {currency} cents to "
              f"{credit['customer_id']}{' against ' + credit['invoice_id'] if credit['invoice_id'] else ''}, reason "
              f"{credit['reason']}, by {credit['actor']} at {credit['issued_at']} (position {result.position:,})")


@period_app.command("close")
def period_close(
    month: str = typer.Argument(..., help="the month to close, YYYY-MM (UTC)"),
    actor: Optional[str] = typer.Option(None, "--actor", help="the person closing the period (required)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Close a month: later usage of it becomes a late adjustment."""
    from ledger.cli.output import emit_json
    from ledger.commands.periods import close_period
    from ledger.domain.commands import ClosePeriod
    from ledger.ingest.records import RecordContext

    try:
        with store() as db, db.connection() as conn:
            moment = now()
            result = close_period(conn, ClosePeriod(month, actor), now=moment,
                                  ctx=RecordContext("ledger period close", moment, db.settings.currency))
    except LedgerError as error:
        get_logger().info("period_close_refused", month=month, rule=getattr(error, "rule", None), actor=actor)
        fail(error)
    get_logger().info("period_closed" if result.created else "period_already_closed", month=month,
                      position=result.position, actor=result.actor)
    if as_json:
        emit_json({"month": month, "position": result.position, "actor": result.actor,
                   "closed_at": str(result.closed_at), "created": result.created,
                   "appended": 1 if result.created else 0})
    elif result.created:
        print(f"closed {month} at position {result.position:,} by {result.actor}")
    else:
        print(f"{month} was already closed at position {result.position:,} by {result.actor} "
              f"({result.closed_at}); nothing appended")

