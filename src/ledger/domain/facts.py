"""The facts of SPEC §3: their stable topics, their keys, and their deterministic ids.

A fact's topic is never renamed once stored. Its id is a uuid5 of its kind and key, so appending
the same fact twice finds the first: a duplicate when the payloads are equal, a conflict otherwise.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

# every amount and quantity is an integer below it in magnitude: JSON readers keep integers exact up to it
AMOUNT_LIMIT = 2**53
NAMESPACE = uuid.UUID("6f1c2d4e-8a3b-5c7d-9e0f-1a2b3c4d5e6f")
KEY_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class FactKind:
    """One kind of fact: the command-line name, the stored topic, and the payload fields forming its key."""

    name: str
    topic: str
    key_fields: tuple[str, ...]

    def key(self, payload: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(str(payload[f]) for f in self.key_fields)

    def fact_id(self, payload: Mapping[str, Any]) -> uuid.UUID:
        """The deterministic id of the fact with this payload's key."""
        return uuid.uuid5(NAMESPACE, KEY_SEPARATOR.join((self.name, *self.key(payload))))

    def describe_key(self, payload: Mapping[str, Any]) -> str:
        return ", ".join(f"{f}={payload.get(f)!r}" for f in self.key_fields)


USAGE = FactKind("usage", "ledger.UsageRecorded", ("source", "event_id"))
IDENTITY = FactKind("identities", "ledger.CustomerIdentityLinked", ("source", "source_customer_id", "effective_from"))
ATTRIBUTES = FactKind("attributes", "ledger.CustomerAttributesChanged", ("customer_id", "effective_from"))
PRICE = FactKind("prices", "ledger.PriceSet", ("plan", "effective_month"))
INVOICE = FactKind("invoices", "ledger.InvoiceIssued", ("invoice_id",))
CREDIT = FactKind("credits", "ledger.CreditIssued", ("credit_id",))
PERIOD_CLOSE = FactKind("closes", "ledger.PeriodClosed", ("month",))
CALC_DEFINED = FactKind("calc_definitions", "ledger.CalculationDefined", ("name",))
# A promotion is not keyed by its name (a calculation may be promoted again after another): each is the next
# version of the one promotions stream, so two promotions decided at once cannot both append.
CALC_PROMOTED = FactKind("calc_promotions", "ledger.CalculationPromoted", ("sequence",))

# Usage facts are rows of usage_facts; each appended batch of them is recorded by one event of this kind
# (its positions, count, rows digest and file), which the hash chain covers.
USAGE_BATCH = FactKind("usage_batch", "ledger.UsageBatchRecorded", ("first_position",))
# Each run of `ledger archive facts` that wrote files is recorded by one fact: its position range and files' sha256.
FACTS_ARCHIVED = FactKind("archive_run", "ledger.FactsArchived", ("archive_id", "run"))

KINDS: dict[str, FactKind] = {k.name: k for k in (USAGE, IDENTITY, ATTRIBUTES, PRICE, INVOICE, CREDIT, PERIOD_CLOSE)}
BY_TOPIC: dict[str, FactKind] = {k.topic: k for k in (*KINDS.values(), USAGE_BATCH, CALC_DEFINED, CALC_PROMOTED,
                                                     FACTS_ARCHIVED)}

# Keys of a stored state that record where and when a fact arrived, not what it says:
# they are left out when two facts with one key are compared.
PROVENANCE_FIELDS = frozenset({"timestamp", "recorded_from", "recorded_line", "issued_by"})
ATTRIBUTE_NAMES = ("name", "segment", "owner", "plan", "region")
CREDIT_REASONS = ("late_usage", "service_issue", "goodwill", "billing_error", "other")
LINE_KINDS = ("subscription", "usage", "adjustment", "other")
# SPEC §3.8: the plan rules a calculation may apply, and the calculation every store starts with.
PLAN_RULES = ("month_start", "daily_prorated")
INITIAL_CALCULATION = ("v1", "month_start")


@dataclass(frozen=True)
class NewFact:
    """A validated fact about to be appended: its kind, canonical payload and provenance."""

    kind: FactKind
    payload: dict[str, Any]
    line: int | None = None
    raw: str = ""
    originator_id: uuid.UUID | None = None  # defaults to the fact id; a credit joins its invoice's stream
    originator_version: int = 1
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def stream_id(self) -> uuid.UUID:
        return self.originator_id or self.kind.fact_id(self.payload)


def differing_fields(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    """The payload fields on which two facts with one key differ (provenance ignored)."""
    names = (set(first) | set(second)) - PROVENANCE_FIELDS
    return sorted(n for n in names if first.get(n) != second.get(n))
