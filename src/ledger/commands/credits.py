"""`ledger credit issue` and credit history ingest: one decision rule, optimistic concurrency per invoice.

A credit against an invoice is appended to the invoice's stream at the next version. Two credits
decided at once against one invoice race for that version: the database lets one in, the other
re-reads the invoice (now with the first credit) and decides again, so the sum of credits can never
pass the invoice's total.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

import psycopg

from ledger import errors
from ledger.domain.commands import IssueCredit, decide_credit
from ledger.domain.facts import CREDIT, INVOICE
from ledger.ingest.contracts import CreditIssuedIn
from ledger.ingest.facts import parse_models
from ledger.ingest.records import RecordContext
from ledger.store import queries
from ledger.store.appender import Rejection, StreamVersionConflict, append_batch, write_quarantine

MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class CreditResult:
    credit: dict[str, Any]
    position: int
    created: bool  # False: an idempotent repeat returned the first credit


def issue_credit(conn: psycopg.Connection, command: IssueCredit, *, now: datetime, ctx: RecordContext,
                 provenance: dict[str, Any] | None = None) -> CreditResult:
    """Decide and append one credit; retried on a concurrent append to the same invoice."""
    for attempt in range(MAX_ATTEMPTS):
        # The invoice's stream version is read before the key: a credit under this key committed in between is
        # then either seen by the key's read or makes our append at the older version conflict. Read the other
        # way round, a credit committed between the two reads was missed and ours went in at the next version.
        invoice = queries.invoice_state(conn, command.invoice_id) if command.invoice_id else None
        existing = queries.credit_by_id(conn, command.idempotency_key)
        exists = queries.customer_exists(conn, command.customer_id)
        payload = decide_credit(command, now=now, customer_exists=exists, invoice=invoice, existing=existing)
        if payload is None:
            return CreditResult(existing, existing["position"], created=False)
        candidate = ctx.candidate(CREDIT, payload, None, "", provenance=provenance or {})
        if invoice is not None:
            candidate.stream_id = INVOICE.fact_id({"invoice_id": invoice.invoice_id}).bytes
            candidate.version = invoice.version + 1
        try:
            outcome = append_batch(conn, CREDIT, [candidate], source_file=ctx.source_file,
                                   quarantine_conflicts=False)
        except StreamVersionConflict:
            time.sleep(0.002 * (attempt % 10))
            continue
        if outcome.appended:
            return CreditResult(payload, outcome.appended[0][1], created=True)
        # the key was taken between our read and our append: decide again against what stands
    raise errors.CommandRefusedError(f"gave up after {MAX_ATTEMPTS} concurrent retries on invoice "
                                     f"{command.invoice_id!r}; nothing was appended")


def ingest_credit_history(conn: psycopg.Connection, ctx: RecordContext, lines: Iterable[tuple[int, bytes]],
                          report) -> None:
    """Credits from a file (`credit_id` as key, `issued_at` given), each through the credit rule."""
    for number, text, model, error, line in parse_models("credits", "ndjson", ctx, lines):
        report.read += 1
        rejection: Rejection | None = None
        if error is not None:
            rejection = Rejection(number, text, str(error), error.field)
        else:
            assert isinstance(model, CreditIssuedIn)
            rejection = _append_history_credit(conn, ctx, model, number, text, report)
        if rejection is not None:
            with conn.transaction(), conn.cursor() as cur:
                report.quarantined += write_quarantine(cur, "credits", ctx.source_file, [rejection])


def _append_history_credit(conn, ctx: RecordContext, model: CreditIssuedIn, number: int, text: str,
                           report) -> Rejection | None:
    command = IssueCredit(model.customer_id, model.amount_cents, model.reason, model.actor, model.credit_id,
                          model.invoice_id, model.memo)
    existing = queries.credit_by_id(conn, model.credit_id)
    if existing is not None:
        stored = {k: existing.get(k) for k in ("customer_id", "invoice_id", "amount_cents", "reason", "memo",
                                                  "actor", "issued_at")}
        wanted = {**command.arguments(), "issued_at": model.issued_at.isoformat(timespec="microseconds")}
        if stored == wanted:
            report.duplicates += 1
            return None
        changed = sorted(k for k in stored if stored[k] != wanted[k])
        report.conflicts += 1
        return Rejection(number, text, f"conflicts with fact at position {existing['position']} "
                                       f"(differs in: {', '.join(changed)})", changed[0])
    try:
        result = issue_credit(conn, command, now=model.issued_at, ctx=ctx,
                              provenance={"recorded_from": ctx.source_file, "recorded_line": number})
    except errors.CommandRefusedError as refusal:
        return Rejection(number, text, str(refusal), _refusal_field(refusal))
    report.appended += 1
    if report.first_position is None:
        report.first_position = result.position
    report.last_position, report.last_line = result.position, number
    return None


def _refusal_field(refusal: errors.CommandRefusedError) -> str | None:
    return {
        errors.MissingActorError: "actor", errors.NonPositiveAmountError: "amount_cents",
        errors.AmountTooLargeError: "amount_cents",
        errors.CreditExceedsInvoiceError: "amount_cents", errors.UnknownCustomerError: "customer_id",
        errors.UnknownInvoiceError: "invoice_id", errors.InvoiceCustomerMismatchError: "customer_id",
        errors.InvalidReasonError: "reason",
    }.get(type(refusal))
