"""Every rejection reason of SPEC §3.1, named per record with its field."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ledger.ingest.records import RecordContext
from ledger.ingest.usage import parse_csv, parse_ndjson
from ledger.store.appender import Rejection
from ledger.store.usage import UsageRow
from tests.builders import line, usage

CTX = RecordContext("test.ndjson", datetime(2026, 11, 23, tzinfo=timezone.utc))


def parse_one(raw: str | bytes) -> UsageRow | Rejection:
    data = raw if isinstance(raw, bytes) else raw.encode()
    (result,) = list(parse_ndjson(CTX, [(7, data)]))
    return result


def rejected(raw, field, *words):
    result = parse_one(raw)
    assert isinstance(result, Rejection), result
    assert result.field == field and result.line == 7
    for word in words:
        assert word in result.reason, result.reason
    return result


@pytest.mark.parametrize("name", ["event_id", "source", "source_customer_id", "meter", "quantity", "event_time"])
def test_missing_field(name):
    rejected(json.dumps(usage(**{name: ...})), name, "missing")


def test_null_counts_as_missing():
    rejected(json.dumps(usage(source=None)), "source", "missing")


@pytest.mark.parametrize("name,value,words", [
    ("event_id", 42, ("string", "integer")),
    ("source", ["a"], ("string", "array")),
    ("quantity", "5", ("integer", "string")),
    ("quantity", True, ("integer", "boolean")),
    ("properties", [1], ("object", "array")),
])
def test_wrong_type(name, value, words):
    rejected(json.dumps(usage(**{name: value})), name, *words)


def test_fractional_quantity():
    rejected(json.dumps(usage(quantity=1.5)), "quantity", "fractional")


def test_negative_quantity():
    rejected(json.dumps(usage(quantity=-4)), "quantity", "negative")


def test_too_large_quantity():
    rejected(json.dumps(usage(quantity=2**53)), "quantity", "2^53")
    assert isinstance(parse_one(json.dumps(usage(quantity=2**53 - 1))), UsageRow)


def test_timestamp_without_offset():
    rejected(json.dumps(usage(event_time="2026-01-05T10:00:00")), "event_time", "no offset")


@pytest.mark.parametrize("value", ["2026-13-05T10:00:00Z", "2026-02-30T10:00:00Z", "2026-01-05T25:00:00Z",
                                   "2026-01-05T10:00:60Z"])
def test_impossible_timestamp(value):
    rejected(json.dumps(usage(event_time=value)), "event_time", "impossible")


def test_not_a_timestamp():
    rejected(json.dumps(usage(event_time="yesterday")), "event_time", "not an RFC 3339")


def test_finer_than_microseconds_is_truncated():
    result = parse_one(json.dumps(usage(event_time="2026-01-05T10:00:00.1234567+01:00")))
    assert isinstance(result, UsageRow)
    assert result.fact_payload()["event_time"] == "2026-01-05T09:00:00.123456+00:00"


@pytest.mark.parametrize("meter", ["API Calls!", "", "a" * 65, "api-calls"])
def test_bad_meter_code(meter):
    rejected(json.dumps(usage(meter=meter)), "meter", "meter code")


def test_unknown_field():
    rejected(json.dumps({**usage(), "colour": "red"}), "colour", "unknown field")


def test_unknown_fields_inside_properties_are_kept():
    result = parse_one(json.dumps(usage(properties={"colour": "red", "nested": {"a": 1}})))
    assert isinstance(result, UsageRow)
    assert result.fact_payload()["properties"] == {"colour": "red", "nested": {"a": 1}}


def test_malformed_json():
    result = rejected('{"event_id": "x", "source": ', None, "malformed JSON")
    assert result.raw == '{"event_id": "x", "source": '


def test_not_an_object():
    rejected("[1, 2]", None, "JSON object")


def test_empty_id():
    rejected(json.dumps(usage(event_id="")), "event_id", "empty")


def test_over_long_id():
    rejected(json.dumps(usage(event_id="x" * 129)), "event_id", "129 characters", "128")
    assert isinstance(parse_one(json.dumps(usage(event_id="x" * 128))), UsageRow)


def test_invalid_utf8_keeps_the_raw_bytes():
    raw = json.dumps(usage()).encode().replace(b"pr_1", b"pr_\xff\xfe")
    result = rejected(raw, None, "invalid UTF-8")
    assert result.raw_bytes == raw
    assert "\\xff" in result.raw


def test_csv_rows_validate_like_ndjson():
    lines = [b"event_id,source,source_customer_id,meter,quantity,event_time",
             b"e1,product,pr_1,api_calls,5,2026-01-05T10:00:00Z",
             b"e2,product,pr_1,api_calls,1.5,2026-01-05T10:00:00Z",
             b"e3,product,pr_1,api_calls,x,2026-01-05T10:00:00Z",
             b"e4,product,,api_calls,1,2026-01-05T10:00:00Z",
             b'e5,product,"pr_1,api_calls,1,2026-01-05T10:00:00Z',
             b"e6,product,pr_1,api_calls,1"]
    results = list(parse_csv(CTX, enumerate(lines, start=1)))
    assert isinstance(results[0], UsageRow) and results[0].fact_payload()["quantity"] == 5
    reasons = [(r.line, r.field, r.reason) for r in results[1:]]
    assert reasons[0][:2] == (3, "quantity") and "whole number" in reasons[0][2]
    assert reasons[1][:2] == (4, "quantity") and "integer" in reasons[1][2]
    assert reasons[2][:2] == (5, "source_customer_id") and "missing" in reasons[2][2]
    assert reasons[3][0] == 6 and "malformed CSV" in reasons[3][2]
    assert reasons[4][0] == 7 and "malformed CSV" in reasons[4][2]


def test_a_row_decodes_to_the_canonical_payload_and_its_key():
    from ledger.store.usage_rows import row_key

    result = parse_one(json.dumps(usage(properties={"b": 1, "a": [2]})))
    assert row_key(result.row) == ("product", "evt-000001")
    assert result.line == 7 and result.month == "2026-01"
    assert result.fact_payload() == {**usage(), "event_time": "2026-01-15T10:00:00.000000+00:00",
                                     "properties": {"a": [2], "b": 1}}


def test_the_common_case_path_agrees_with_the_detailed_checks():
    from hypothesis import given, settings, strategies as st

    from ledger.ingest.usage import _validate_common_case, _validate_naming_the_problem
    from ledger.ingest.records import RecordError

    times = st.sampled_from(["2026-01-05T10:00:00.123456Z", "2026-01-05T10:00:00Z", "2026-13-05T10:00:00.000000Z",
                             "2026-01-05T10:00:00.123456+05:30", "2026-01-05T10:00:00.1234567Z", "x" * 27,
                             "2026-02-30T10:00:00.000000Z", "2026-01-05 10:00:00.000000Z"])
    values = st.one_of(st.integers(-5, 2**54), st.floats(allow_nan=False), st.text(max_size=3), st.none(),
                       st.booleans())

    @settings(max_examples=300, deadline=None)
    @given(st.fixed_dictionaries({"event_id": st.one_of(st.text(max_size=130), values),
                                  "source": st.sampled_from(["product", "", 5]),
                                  "source_customer_id": st.just("pr_1"),
                                  "meter": st.sampled_from(["api_calls", "API", "a" * 65]),
                                  "quantity": values, "event_time": times},
                                 optional={"properties": st.one_of(st.none(), st.just({"a": 1}), st.just([1])),
                                           "extra": st.just(1)}))
    def agree(record):
        fast = _validate_common_case(record)
        try:
            slow = _validate_naming_the_problem(record)
        except RecordError:
            assert fast is None
            return
        if fast is not None:
            assert fast == slow

    agree()


def test_the_one_pass_row_agrees_with_the_detailed_path():
    """`_well_formed_row` (the hot path) yields the very row the detailed checks would, or defers to them."""
    from hypothesis import given, settings, strategies as st

    from ledger.ingest.records import RecordError
    from ledger.ingest.usage import _validate_naming_the_problem, _well_formed_row, usage_row

    times = st.sampled_from(["2026-01-05T10:00:00.123456Z", "2026-01-05T10:00:00Z", "2026-13-05T10:00:00.000000Z",
                             "2026-01-05T10:00:00.123456+05:30", "2026-02-30T10:00:00.000000Z", "x" * 27])
    values = st.one_of(st.integers(-5, 2**54), st.floats(allow_nan=False), st.text(max_size=3), st.none())

    @settings(max_examples=300, deadline=None)
    @given(st.fixed_dictionaries({"event_id": st.one_of(st.text(min_size=1, max_size=130), values),
                                  "source": st.sampled_from(["product", "", 5, "ünï"]),
                                  "source_customer_id": st.just("pr_1"),
                                  "meter": st.sampled_from(["api_calls", "API", "a" * 65]),
                                  "quantity": values, "event_time": times},
                                 optional={"properties": st.one_of(st.none(), st.just({"b": 1, "a": [2]}),
                                                                   st.just([1])),
                                           "extra": st.just(1)}))
    def agree(record):
        fast = _well_formed_row(json.dumps(record).encode(), 12)
        try:
            payload, row = _validate_naming_the_problem(record)
        except RecordError:
            assert fast is None
            return
        if fast is not None:
            encoded, key_hash, month = fast
            assert UsageRow(12, key_hash, month, encoded) == usage_row(payload, row, 12)

    agree()


def test_the_chunk_parser_packs_what_the_record_parser_yields():
    from ledger.ingest.usage import parse_ndjson_chunk
    from ledger.store.usage import pack_usage

    lines = [(1, line(usage()).encode()), (2, b""), (3, b"{bad json"),
             (4, line(usage(event_id="evt-2", quantity=2.5)).encode()), (5, b"  "),
             (6, line(usage(event_id="evt-3", event_time="2026-01-15T11:00:00+01:00")).encode()),
             (7, b"\xff\xfe"), (8, line(usage(event_id="evt-4", properties={"z": 1})).encode())]
    fused, packed = parse_ndjson_chunk(CTX, lines), pack_usage(parse_ndjson(CTX, lines))
    assert (fused.blob, fused.ends, fused.hashes, fused.months, fused.read) == \
        (packed.blob, packed.ends, packed.hashes, packed.months, packed.read)
    assert fused.read == 6 and fused.count == 3
    assert [(r.line, r.reason) for r in fused.rejections] == [(r.line, r.reason) for r in packed.rejections]
