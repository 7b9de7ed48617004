"""CloudEvents 1.0 validity (core spec + JSON format) and the SPEC §3.1 mapping."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ledger.ingest.cloudevents import parse_cloudevents
from ledger.ingest.records import RecordContext
from ledger.store.appender import Rejection
from ledger.store.usage import UsageRow

CTX = RecordContext("ce.ndjson", datetime(2026, 11, 23, tzinfo=timezone.utc))


def event(**overrides):
    base = {"specversion": "1.0", "id": "ce-1", "source": "product", "subject": "pr_1", "type": "api_calls",
            "time": "2026-01-05T10:00:00Z", "datacontenttype": "application/json", "data": {"quantity": 3}}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def parse(obj) -> UsageRow | Rejection:
    (result,) = list(parse_cloudevents(CTX, [(1, json.dumps(obj).encode())]))
    return result


def payload(obj):
    result = parse(obj)
    assert isinstance(result, UsageRow), result
    return result.fact_payload()


def reject(obj, field, word):
    result = parse(obj)
    assert isinstance(result, Rejection), result
    assert result.field == field and word in result.reason, (result.field, result.reason)


def test_maps_attributes_to_a_usage_record():
    p = payload(event(data={"quantity": 3, "endpoint": "/score"}, traceparent="00-abc"))
    assert p["event_id"] == "ce-1" and p["source"] == "product" and p["source_customer_id"] == "pr_1"
    assert p["meter"] == "api_calls" and p["quantity"] == 3
    assert p["properties"] == {"endpoint": "/score", "extensions": {"traceparent": "00-abc"}}


def test_quantity_is_1_without_data_or_quantity():
    assert payload(event(data=...))["quantity"] == 1
    assert payload(event(data={"endpoint": "/x"}))["quantity"] == 1


def test_non_object_data_goes_to_properties():
    p = payload(event(data="hello", datacontenttype="text/plain"))
    assert p["quantity"] == 1 and p["properties"] == {"data": "hello"}
    assert payload(event(data=[1, 2]))["properties"] == {"data": [1, 2]}


def test_data_base64_is_kept():
    p = payload(event(data=..., data_base64="aGVsbG8=", datacontenttype="application/octet-stream"))
    assert p["quantity"] == 1 and p["properties"] == {"data_base64": "aGVsbG8="}


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type"])
def test_required_context_attributes(name):
    reject(event(**{name: ...}), name, "missing")


def test_specversion_must_be_1_0():
    reject(event(specversion="0.3"), "specversion", "1.0")


@pytest.mark.parametrize("name,value", [("id", 5), ("source", True), ("type", {"a": 1}), ("subject", 1),
                                        ("time", 1700000000), ("datacontenttype", 1)])
def test_attribute_types(name, value):
    reject(event(**{name: value}), name, "string")


@pytest.mark.parametrize("name", ["id", "source", "type", "subject"])
def test_attributes_must_not_be_empty(name):
    reject(event(**{name: ""}), name, "non-empty")


def test_time_must_be_rfc3339():
    reject(event(time="2026-01-05 10:00"), "time", "RFC 3339")
    reject(event(time="2026-01-05T10:00:00"), "time", "offset")


def test_dataschema_must_be_an_absolute_uri():
    reject(event(dataschema="relative/path"), "dataschema", "absolute URI")
    assert isinstance(parse(event(dataschema="https://example.com/schema.json")), UsageRow)


@pytest.mark.parametrize("name", ["Trace", "trace-id", "trace_id", "averyveryverylongextensionname"])
def test_extension_attribute_names(name):
    reject(event(**{name: "x"}), name, "extension attribute name")


@pytest.mark.parametrize("value", [{"a": 1}, [1], 2**31, 1.5])
def test_extension_attribute_values(value):
    reject(event(ext=value), "ext", "extension attribute")


def test_extension_boolean_and_integer_values_are_valid():
    assert payload(event(sampled=True, priority=5))["properties"]["extensions"] == {"sampled": True, "priority": 5}


def test_data_and_data_base64_together_are_invalid():
    reject(event(data_base64="aGVsbG8="), "data_base64", "not both")


def test_data_base64_must_be_base64():
    reject(event(data=..., data_base64="not base64!!"), "data_base64", "base64")


def test_null_attributes_are_absent():
    assert isinstance(parse(event(dataschema=None)), UsageRow)


def test_subject_and_time_are_required_by_the_ledger():
    reject(event(subject=...), "subject", "required")
    reject(event(time=...), "time", "required")


def test_type_must_be_a_meter_code():
    reject(event(type="com.example.api.call"), "type", "meter code")


def test_bad_quantity_in_data_names_data_quantity():
    reject(event(data={"quantity": -1}), "data.quantity", "negative")


def test_not_an_object():
    result = parse([1])
    assert isinstance(result, Rejection) and "JSON object" in result.reason
