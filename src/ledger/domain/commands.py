"""Finance's commands (SPEC §3.6–3.7) and the pure decisions behind them.

A decision takes the command and what the store knows, and returns the payload to append
(or None when there is nothing to append), or raises the refusal that names the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger import errors
from ledger.domain.facts import AMOUNT_LIMIT, CREDIT_REASONS
from ledger.domain.time import month_start, next_month, parse_month


@dataclass(frozen=True)
class IssueCredit:
    customer_id: str
    amount_cents: int
    reason: str
    actor: str | None
    idempotency_key: str
    invoice_id: str | None = None
    memo: str | None = None

    def arguments(self) -> dict[str, Any]:
        """What the idempotency key binds: a repeat with other arguments is refused."""
        return {"customer_id": self.customer_id, "invoice_id": self.invoice_id, "amount_cents": self.amount_cents,
                "reason": self.reason, "memo": self.memo, "actor": self.actor}


@dataclass(frozen=True)
class InvoiceState:
    """An invoice as the credit rule sees it: whose it is, its total, and what was credited already."""

    invoice_id: str
    customer_id: str | None
    total_cents: int
    credited_cents: int
    version: int  # its stream's version: 1 + the credits against it

    @property
    def remaining_cents(self) -> int:
        return self.total_cents - self.credited_cents


def decide_credit(command: IssueCredit, *, now: datetime, customer_exists: bool,
                  invoice: InvoiceState | None, existing: dict[str, Any] | None) -> dict[str, Any] | None:
    """The CreditIssued payload to append, None for an idempotent repeat, or a refusal."""
    if not command.actor or not command.actor.strip():
        raise errors.MissingActorError("a credit needs --actor: the person who issues it")
    if not command.idempotency_key or not command.idempotency_key.strip():
        raise errors.MissingIdempotencyKeyError("a credit needs a non-empty --idempotency-key: the key that makes a "
                                                "retry return the first credit instead of issuing a second")
    if command.amount_cents <= 0:
        raise errors.NonPositiveAmountError(f"amount must be positive, got {command.amount_cents} cents",
                                            amount_cents=command.amount_cents)
    if command.amount_cents >= AMOUNT_LIMIT:
        raise errors.AmountTooLargeError(f"amount must be below 2^53 cents, got {command.amount_cents}",
                                         amount_cents=command.amount_cents)
    if command.reason not in CREDIT_REASONS:
        raise errors.InvalidReasonError(f"reason {command.reason!r} is not one of {', '.join(CREDIT_REASONS)}")
    if existing is not None:
        first = {k: existing.get(k) for k in command.arguments()}
        if first != command.arguments():
            changed = sorted(k for k in first if first[k] != command.arguments()[k])
            raise errors.IdempotencyKeyReusedError(
                f"idempotency key {command.idempotency_key!r} was used for credit at position "
                f"{existing.get('position')} with other arguments (differs in: {', '.join(changed)})",
                differing=changed)
        return None
    if not customer_exists:
        raise errors.UnknownCustomerError(f"customer {command.customer_id!r} has no identity link or attributes",
                                          customer_id=command.customer_id)
    if command.invoice_id is not None:
        if invoice is None:
            raise errors.UnknownInvoiceError(f"invoice {command.invoice_id!r} does not exist",
                                             invoice_id=command.invoice_id)
        if invoice.customer_id != command.customer_id:
            raise errors.InvoiceCustomerMismatchError(
                f"invoice {invoice.invoice_id!r} belongs to {invoice.customer_id or 'no attributed customer'}, "
                f"not {command.customer_id!r}", invoice_id=invoice.invoice_id, customer_id=invoice.customer_id)
        if command.amount_cents > invoice.remaining_cents:
            raise errors.CreditExceedsInvoiceError(
                f"{command.amount_cents} cents exceeds invoice {invoice.invoice_id!r}'s remaining creditable "
                f"amount of {invoice.remaining_cents} cents (total {invoice.total_cents} − credited "
                f"{invoice.credited_cents})", invoice_id=invoice.invoice_id, remaining_cents=invoice.remaining_cents)
    return {
        "credit_id": command.idempotency_key, "customer_id": command.customer_id, "invoice_id": command.invoice_id,
        "amount_cents": command.amount_cents, "reason": command.reason, "memo": command.memo,
        "actor": command.actor, "issued_at": now.isoformat(timespec="microseconds"),
    }


@dataclass(frozen=True)
class ClosePeriod:
    month: str
    actor: str | None


def decide_close(command: ClosePeriod, *, now: datetime, closed: set[str], months_with_usage: set[str]
                 ) -> dict[str, Any] | None:
    """The PeriodClosed payload, None when the month is closed already, or a refusal."""
    try:
        parse_month(command.month)
    except ValueError as error:
        raise errors.InvalidMonthError(str(error)) from None
    if not command.actor or not command.actor.strip():
        raise errors.MissingActorError("closing a period needs --actor: the person who closes it")
    if command.month in closed:
        return None
    ends = month_start(next_month(command.month))
    if now < ends:
        raise errors.MonthNotEndedError(
            f"{command.month} has not ended: it ends at {ends.isoformat()} and now is {now.isoformat()}",
            month=command.month)
    open_before = sorted(m for m in months_with_usage if m < command.month and m not in closed)
    if open_before:
        raise errors.EarlierMonthOpenError(
            f"{open_before[0]} has usage and is still open; close it before {command.month}",
            month=command.month, open_month=open_before[0])
    return {"month": command.month, "actor": command.actor, "closed_at": now.isoformat(timespec="microseconds")}
