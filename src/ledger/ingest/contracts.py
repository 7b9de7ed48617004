"""Input contracts (pydantic v2) of the non-usage facts, SPEC §3.2–3.6.

Each model turns one record into its canonical payload, or fails naming the field and the reason.
Strict types: a number where a string is due (or "5" where an integer is due) is rejected.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, ValidationError,
                      field_validator, model_validator)

from ledger.domain.facts import AMOUNT_LIMIT, ATTRIBUTE_NAMES, CREDIT_REASONS
from ledger.domain.time import parse_month, parse_timestamp
from ledger.ingest.records import RecordError
from ledger.ingest.usage import METER

Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
Month = Annotated[str, BeforeValidator(parse_month)]
Id = Annotated[StrictStr, Field(min_length=1, max_length=128)]


def _within_limit(value: Any) -> Any:
    # JSON integers past 2^64 arrive as floats: name the rule they break, not "not an integer"
    if isinstance(value, float) and value.is_integer() and abs(value) >= AMOUNT_LIMIT:
        raise ValueError(f"must be between -2^53 and 2^53, got {int(value)}")
    if type(value) is int and abs(value) >= AMOUNT_LIMIT:
        raise ValueError(f"must be between -2^53 and 2^53, got {value}")
    return value


Cents = Annotated[StrictInt, BeforeValidator(_within_limit)]
NonNegative = Annotated[StrictInt, BeforeValidator(_within_limit), Field(ge=0)]


def _meter(value: Any) -> str:
    if not isinstance(value, str) or not METER.match(value):
        raise ValueError(f"{value!r} is not a meter code ([a-z0-9_]{{1,64}})")
    return value


Meter = Annotated[str, BeforeValidator(_meter)]


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


class IdentityLinkIn(Contract):
    source: Id
    source_customer_id: Id
    customer_id: Id
    effective_from: Timestamp

    def payload(self) -> dict[str, Any]:
        return {"source": self.source, "source_customer_id": self.source_customer_id,
                "customer_id": self.customer_id, "effective_from": _iso(self.effective_from)}


class AttributesChangedIn(Contract):
    customer_id: Id
    effective_from: Timestamp
    name: StrictStr | None = None
    segment: StrictStr | None = None
    owner: StrictStr | None = None
    plan: StrictStr | None = None
    region: StrictStr | None = None

    def payload(self) -> dict[str, Any]:
        # Only the attributes the record names: a left-out field is unchanged, a null clears.
        named = {n: getattr(self, n) for n in ATTRIBUTE_NAMES if n in self.model_fields_set}
        return {"customer_id": self.customer_id, "effective_from": _iso(self.effective_from), "attributes": named}


class MeterPriceIn(Contract):
    included_units: NonNegative
    unit_price_cents: NonNegative


class PriceSetIn(Contract):
    plan: Id
    effective_month: Month
    base_fee_cents: NonNegative
    meters: dict[Meter, MeterPriceIn]


class InvoiceLineIn(Contract):
    line_id: Id
    kind: Literal["subscription", "usage", "adjustment", "other"]
    meter: Meter | None = None
    quantity: NonNegative | None = None
    amount_cents: Cents

    @model_validator(mode="after")
    def _usage_lines_name_meter_and_quantity(self) -> "InvoiceLineIn":
        if self.kind == "usage":
            for name in ("meter", "quantity"):
                if getattr(self, name) is None:
                    raise ValueError(f"a usage line requires {name}")
        else:
            for name in ("meter", "quantity"):
                if name in self.model_fields_set:
                    raise ValueError(f"a {self.kind} line must not have {name}")
        return self

    def payload(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(mode="json").items() if v is not None or k == "amount_cents"}


class InvoiceIssuedIn(Contract):
    invoice_id: Id
    source: Id
    source_customer_id: Id
    period: Month
    issued_at: Timestamp
    currency: StrictStr
    total_cents: Cents
    lines: list[InvoiceLineIn]

    @field_validator("lines")
    @classmethod
    def _lines(cls, lines: list[InvoiceLineIn]) -> list[InvoiceLineIn]:
        """Line ids unique; the lines' amounts, and their usage quantities, within the limit of one amount even
        added up in any order and in any part (what the projections sum per invoice, per meter), so that no
        invoice can take a sum past the projections' bigint."""
        seen: set[str] = set()
        for line in lines:
            if line.line_id in seen:
                raise ValueError(f"line_id {line.line_id!r} appears twice")
            seen.add(line.line_id)
        amounts = sum(abs(line.amount_cents) for line in lines)
        if amounts >= AMOUNT_LIMIT:
            raise ValueError(f"the lines' amount_cents add up to {amounts} in absolute value; at most 2^53 - 1")
        quantities = sum(line.quantity or 0 for line in lines)
        if quantities >= AMOUNT_LIMIT:
            raise ValueError(f"the usage lines' quantities add up to {quantities}; at most 2^53 - 1")
        return lines

    def payload(self) -> dict[str, Any]:
        return {"invoice_id": self.invoice_id, "source": self.source, "source_customer_id": self.source_customer_id,
                "period": self.period, "issued_at": _iso(self.issued_at), "currency": self.currency,
                "total_cents": self.total_cents, "lines": [line.payload() for line in self.lines]}


class CreditIssuedIn(Contract):
    credit_id: Id
    customer_id: Id
    invoice_id: Id | None = None
    amount_cents: Cents
    reason: StrictStr
    memo: StrictStr | None = None
    actor: StrictStr | None = None
    issued_at: Timestamp

    @field_validator("reason")
    @classmethod
    def _known_reason(cls, reason: str) -> str:
        if reason not in CREDIT_REASONS:
            raise ValueError(f"{reason!r} is not one of {', '.join(CREDIT_REASONS)}")
        return reason


def first_error(error: ValidationError) -> RecordError:
    """The first problem pydantic found, as a RecordError naming its field path."""
    problem = error.errors()[0]
    location = ".".join(str(part) for part in problem["loc"]) or None
    kind = problem["type"]
    message = problem["msg"]
    if kind == "missing":
        message = "missing required field"
    elif kind == "extra_forbidden":
        message = "unknown field"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    elif "input" in problem and kind not in ("missing",):
        message = f"{message}, got {problem['input']!r}"
    return RecordError(message, location)
