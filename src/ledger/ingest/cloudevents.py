"""CloudEvents 1.0 structured JSON (SPEC §3.1): first a valid CloudEvent, then a usage record.

Validity follows the CloudEvents 1.0 core spec and its JSON event format: required context
attributes (`specversion` = "1.0", non-empty `id`, `source`, `type`), optional ones with their
types (`datacontenttype`, `dataschema` an absolute URI, `subject` non-empty, `time` RFC 3339),
extension attribute names of lower-case letters and digits, extension values of a CloudEvents
type (string, boolean, 32-bit integer), and at most one of `data` / `data_base64` (valid base64).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Iterable, Iterator

import msgspec

from ledger.domain.time import TimestampError, parse_timestamp
from ledger.ingest.records import RecordContext, RecordError, load_json, plainly_safe, raw_text, rejection
from ledger.ingest.timestamps import plain_micros
from ledger.ingest.usage import (UNSET, _NOT_PLAIN, Parsed, _is_utf8, _row, _type_name, _within_limits, pack_fast,
                                 usage_row, validate_usage)
from ledger.store.usage import UsageChunk

CONTEXT_ATTRIBUTES = ("specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time")
EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$")
INT32 = (-(2**31), 2**31 - 1)


def validate_cloudevent(event: Any) -> dict[str, Any]:
    """Check a decoded JSON value against CloudEvents 1.0; return its attributes (nulls dropped)."""
    if type(event) is not dict:
        raise RecordError(f"a CloudEvent must be a JSON object, got {_type_name(event)}")
    # JSON format: an attribute whose value is null is absent
    event = {k: v for k, v in event.items() if v is not None}
    if "specversion" not in event:
        raise RecordError("missing required CloudEvents attribute", "specversion")
    if event["specversion"] != "1.0":
        raise RecordError(f"must be \"1.0\", got {event['specversion']!r}", "specversion")
    for name in ("id", "source", "type"):
        if name not in event:
            raise RecordError("missing required CloudEvents attribute", name)
    for name in ("id", "source", "type", "subject", "datacontenttype", "dataschema", "time"):
        if name in event:
            if not isinstance(event[name], str):
                raise RecordError(f"must be a string, got {_type_name(event[name])}", name)
            if not event[name]:
                raise RecordError("must be a non-empty string", name)
    if "dataschema" in event and not ABSOLUTE_URI.match(event["dataschema"]):
        raise RecordError(f"must be an absolute URI, got {event['dataschema']!r}", "dataschema")
    if "time" in event and plain_micros(event["time"]) is None:  # the common shapes decided in a few checks
        try:
            parse_timestamp(event["time"])
        except TimestampError as error:
            raise RecordError(str(error), "time") from None
    if "data" in event and "data_base64" in event:
        raise RecordError("a CloudEvent carries data or data_base64, not both", "data_base64")
    if "data_base64" in event:
        encoded = event["data_base64"]
        if not isinstance(encoded, str):
            raise RecordError(f"must be a base64 string, got {_type_name(encoded)}", "data_base64")
        try:
            base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise RecordError("is not valid base64", "data_base64") from None
    for name, value in event.items():
        if name in CONTEXT_ATTRIBUTES or name in ("data", "data_base64"):
            continue
        if not EXTENSION_NAME.match(name):
            raise RecordError(
                "is not a valid CloudEvents extension attribute name (lower-case a-z and 0-9, at most 20)", name)
        if type(value) is bool or isinstance(value, str):
            continue
        if type(value) is int and INT32[0] <= value <= INT32[1]:
            continue
        raise RecordError(f"extension attribute must be a string, boolean or 32-bit integer, got "
                          f"{_type_name(value)}", name)
    return event


def to_usage_record(event: dict[str, Any]) -> dict[str, Any]:
    """The SPEC §3.1 mapping of a valid CloudEvent to a usage record."""
    for name in ("subject", "time"):
        if name not in event:
            raise RecordError("missing: required by the ledger for usage CloudEvents", name)
    record: dict[str, Any] = {
        "event_id": event["id"], "source": event["source"], "source_customer_id": event["subject"],
        "meter": event["type"], "event_time": event["time"], "quantity": 1,
    }
    properties: dict[str, Any] = {}
    data = event.get("data")
    if isinstance(data, dict):
        rest = dict(data)
        if "quantity" in rest:
            record["quantity"] = rest.pop("quantity")
        properties.update(rest)
    elif "data" in event:
        properties["data"] = data
    if "data_base64" in event:
        properties["data_base64"] = event["data_base64"]
    extensions = {k: v for k, v in event.items() if k not in CONTEXT_ATTRIBUTES and k not in ("data", "data_base64")}
    if extensions:
        properties["extensions"] = extensions
    if properties:
        record["properties"] = properties
    return record


def _field_of_mapped(error: RecordError) -> RecordError:
    """Name the CloudEvents attribute a usage-field error came from."""
    origin = {"event_id": "id", "source_customer_id": "subject", "meter": "type", "event_time": "time",
              "quantity": "data.quantity"}.get(error.field or "", error.field)
    return RecordError(error.reason, origin)


def parse_cloudevents(ctx: RecordContext, lines: Iterable[tuple[int, bytes]]) -> Iterator[Parsed]:
    for number, line in lines:
        if not line.strip():
            continue
        yield _parse_in_detail(number, line)


def _parse_in_detail(number: int, line: bytes) -> Parsed:
    try:
        record = to_usage_record(validate_cloudevent(load_json(line)))
        try:
            payload, row = validate_usage(record)
        except RecordError as error:
            raise _field_of_mapped(error) from None
    except RecordError as error:
        return rejection(number, raw_text(line), error, raw_bytes=None if _is_utf8(line) else line)
    return usage_row(payload, row, number)


class _PlainData(msgspec.Struct, forbid_unknown_fields=True):
    quantity: int


class _PlainEvent(msgspec.Struct, forbid_unknown_fields=True):
    """The common usage event, decoded in one C call: the required four attributes, subject and time, optionally a
    content type and data holding the quantity alone. Anything else (extensions, data_base64, other data, nulls,
    another type) fails to decode and takes the detailed path."""

    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str | msgspec.UnsetType = msgspec.UNSET
    data: _PlainData | msgspec.UnsetType = msgspec.UNSET


_decode_plain = msgspec.json.Decoder(_PlainEvent).decode


def well_formed_cloudevent_row(line: bytes, number: int) -> tuple[bytes, int, str] | None:
    """The common usage CloudEvent straight to its row, as `_parse_in_detail` would make it; None declines."""
    try:
        event = _decode_plain(line)
    except _NOT_PLAIN:
        return None
    if event.specversion != "1.0":
        return None
    keys, content_type, data = 6, event.datacontenttype, event.data
    if content_type is not UNSET:
        if not content_type:
            return None
        keys += 1
    else:
        content_type = ""
    if data is not UNSET:  # {"quantity": N}: one level deep, one colon of its own
        keys, quantity, own_colons = keys + 1, data.quantity, 1
    else:
        quantity, own_colons = 1, 0
    event_id, source, customer, meter, text = event.id, event.source, event.subject, event.type, event.time
    if not _within_limits(event_id, source, customer, meter, quantity):
        return None
    instant = plain_micros(text)
    if instant is None:
        return None
    colons = own_colons + f"{event_id}{source}{customer}{meter}{text}{content_type}".count(":")
    if not plainly_safe(line, keys, None, colons):
        return None
    return _row(event_id, source, customer, meter, quantity, instant, number)


def parse_cloudevents_chunk(ctx: RecordContext, lines: Iterable[tuple[int, bytes]]) -> UsageChunk:
    """`pack_usage(parse_cloudevents(...))` in one loop: the common events go straight into the chunk."""
    return pack_fast(lines, well_formed_cloudevent_row, _parse_in_detail)
