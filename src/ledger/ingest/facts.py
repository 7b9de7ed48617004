"""Parsers of identities, attributes, prices, invoices and credits: NDJSON or CSV into candidates."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from pydantic import ValidationError

from ledger.domain.facts import ATTRIBUTES, IDENTITY, INVOICE, PRICE, FactKind
from ledger.ingest.contracts import (AttributesChangedIn, Contract, CreditIssuedIn, IdentityLinkIn, InvoiceIssuedIn,
                                     PriceSetIn, first_error)
from ledger.ingest.records import RecordContext, RecordError, load_json, raw_text, rejection
from ledger.ingest.usage import Parsed, _is_utf8, csv_records

CONTRACTS: dict[str, tuple[FactKind | None, type[Contract], bool]] = {
    # kind name: (fact kind, contract, CSV allowed)
    "identities": (IDENTITY, IdentityLinkIn, True),
    "attributes": (ATTRIBUTES, AttributesChangedIn, True),
    "prices": (PRICE, PriceSetIn, False),
    "invoices": (INVOICE, InvoiceIssuedIn, False),
    "credits": (None, CreditIssuedIn, False),
}


def validate_record(contract: type[Contract], record: Any, ctx: RecordContext) -> Contract:
    if type(record) is not dict:
        raise RecordError("must be a JSON object")
    try:
        model = contract.model_validate(record)
    except ValidationError as error:
        raise first_error(error) from None
    if isinstance(model, InvoiceIssuedIn) and model.currency != ctx.currency:
        raise RecordError(f"currency {model.currency!r} is not the ledger's currency {ctx.currency!r}", "currency")
    return model


def _records(fmt: str, contract: type[Contract], lines: Iterable[tuple[int, bytes]]) -> Iterator[
        tuple[int, str, Any, RecordError | None, bytes]]:
    if fmt == "csv":
        fields = contract.model_fields
        required = [n for n, f in fields.items() if f.is_required()]
        yield from csv_records(lines, frozenset(fields), required)
        return
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = load_json(line)
        except RecordError as error:
            yield number, raw_text(line), None, error, line
            continue
        yield number, line.decode("utf-8"), record, None, line


def parse_models(kind_name: str, fmt: str, ctx: RecordContext, lines: Iterable[tuple[int, bytes]]) -> Iterator[
        tuple[int, str, Contract | None, RecordError | None, bytes]]:
    """Each record as its validated contract, or the error that rejects it."""
    _, contract, _ = CONTRACTS[kind_name]
    for number, text, record, error, line in _records(fmt, contract, lines):
        model = None
        if error is None:
            try:
                model = validate_record(contract, record, ctx)
            except RecordError as failure:
                error = failure
        yield number, text, model, error, line


def parse_facts(kind_name: str, fmt: str, ctx: RecordContext, lines: Iterable[tuple[int, bytes]]) -> Iterator[Parsed]:
    kind = CONTRACTS[kind_name][0]
    assert kind is not None
    for number, text, model, error, line in parse_models(kind_name, fmt, ctx, lines):
        if error is not None:
            yield rejection(number, text, error, raw_bytes=None if _is_utf8(line) else line)
        else:
            yield ctx.candidate(kind, model.payload(), number, text)
