"""The NDJSON, CSV and CloudEvents fast paths decide exactly what their detailed parsers decide, record by record.

A CSV row without quotes, and the common usage CloudEvent, go straight to their COPY row; anything else is
declined to the detailed parser. For any record (well formed or one field off), the chunk the fast path builds
equals the chunk built from the detailed parser's results: the same rows, key hashes, months and rejections.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ledger.ingest.cloudevents import parse_cloudevents, parse_cloudevents_chunk, well_formed_cloudevent_row
from ledger.ingest.records import RecordContext
from ledger.ingest.usage import (CsvColumns, _well_formed_row, csv_fast_row, lines_stand_alone, parse_csv, parse_csv_block,
                                 parse_ndjson, parse_ndjson_chunk, validate_usage)
from ledger.store.usage import pack_usage

CTX = RecordContext("test", datetime(2026, 11, 23, tzinfo=timezone.utc))

texts = st.one_of(st.sampled_from(["evt-1", "pr_1", "product", "a:b", "x" * 128, "x" * 129, "", " pad ", "é",
                                   "a,b", 'q"uote', "tab\tbed", "\\u0000"]),
                  st.text(max_size=12))
meters = st.one_of(st.sampled_from(["api_calls", "fraud_checks", "API", "a-b", "", "x" * 65]), st.text(max_size=6))
times = st.one_of(st.sampled_from(["2026-01-05T10:00:07.123456Z", "2026-01-05T10:00:07Z", "2026-01-05 10:00:07+02:00",
                                   "2026-01-05t10:00:07.1z", "2026-02-30T10:00:07Z", "2026-01-05T24:00:00Z", "",
                                   "2026-01-05T10:00:07"]), st.text(max_size=8))
quantities = st.one_of(st.integers(-5, 2**53 + 5), st.sampled_from([0, 1, 2**53 - 1, 1.5, 2.0, "7", None, True]))


@st.composite
def usage_records(draw) -> dict:
    return {"event_id": draw(texts), "source": draw(texts), "source_customer_id": draw(texts),
            "meter": draw(meters), "quantity": draw(quantities), "event_time": draw(times)}


def chunk_state(chunk):
    return (chunk.blob, list(chunk.ends), list(chunk.hashes), sorted(chunk.months), chunk.rejections, chunk.read)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(usage_records(), st.permutations(["event_id", "source", "source_customer_id", "meter", "quantity",
                                         "event_time"]), st.booleans())
def test_a_csv_row_fast_or_declined_gives_the_detailed_result(record, order, with_properties):
    names = list(order) + (["properties"] if with_properties else [])
    header = (1, ",".join(names).encode())
    cells = ["" if record[n] is None else str(record[n]) for n in order] + ([""] if with_properties else [])
    line = ",".join(cells).encode("utf-8", "surrogatepass")
    if not lines_stand_alone(line) or b"\n" in line or b"\r" in line:
        return  # a cell that spans lines is never handed to the fast path
    columns = CsvColumns(*header)
    detailed = list(parse_csv(CTX, [header, (2, line)]))
    expected = pack_usage(detailed)
    assert chunk_state(parse_csv_block(CTX, columns, [(2, line)])) == chunk_state(expected)
    fast = csv_fast_row(columns, line, 2)
    if fast is not None:  # what the fast path accepts, the detailed one accepts as the same row
        assert len(detailed) == 1 and (fast[0], fast[1], fast[2]) == (detailed[0].row, detailed[0].key_hash,
                                                                       detailed[0].month)


extras = st.fixed_dictionaries({}, optional={
    "datacontenttype": st.sampled_from(["application/json", "", 5, None]),
    "traceid": st.just("abc"), "data_base64": st.just("AA=="), "dataschema": st.just("urn:x"),
    "specversion": st.sampled_from(["0.3", 1.0, None])})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(usage_records(), extras, st.sampled_from(["quantity", "absent", "more", "not-object", "empty"]))
def test_a_cloudevent_fast_or_declined_gives_the_detailed_result(record, extra, data_shape):
    event = {"specversion": "1.0", "id": record["event_id"], "source": record["source"], "type": record["meter"],
             "subject": record["source_customer_id"], "time": record["event_time"], **extra}
    if data_shape == "quantity":
        event["data"] = {"quantity": record["quantity"]}
    elif data_shape == "more":
        event["data"] = {"quantity": record["quantity"], "region": "eu"}
    elif data_shape == "not-object":
        event["data"] = [record["quantity"]]
    elif data_shape == "empty":
        event["data"] = {}
    line = json.dumps(event).encode()
    detailed = list(parse_cloudevents(CTX, [(2, line)]))
    assert chunk_state(parse_cloudevents_chunk(CTX, [(2, line)])) == chunk_state(pack_usage(detailed))
    fast = well_formed_cloudevent_row(line, 2)
    if fast is not None:
        assert len(detailed) == 1 and (fast[0], fast[1], fast[2]) == (detailed[0].row, detailed[0].key_hash,
                                                                       detailed[0].month)


def test_the_fast_paths_take_the_common_records():
    columns = CsvColumns(1, b"event_id,source,source_customer_id,meter,quantity,event_time")
    assert csv_fast_row(columns, b"e1,product,pr_1,api_calls,5,2026-01-05T10:00:07Z", 2) is not None
    line = json.dumps({"specversion": "1.0", "id": "e1", "source": "product", "type": "api_calls", "subject": "pr_1",
                       "time": "2026-01-05T10:00:07-05:00", "datacontenttype": "application/json",
                       "data": {"quantity": 5}}).encode()
    assert well_formed_cloudevent_row(line, 2) is not None
    duplicated = line.replace(b'"id": "e1"', b'"id": "e1", "id": "e2"')
    assert well_formed_cloudevent_row(duplicated, 2) is None  # a repeated key goes to the detailed gate


_PLAIN = ('"event_id": "e1", "source": "product", "source_customer_id": "pr_1", "meter": "api_calls", '
          '"quantity": 5, "event_time": "2026-01-05T10:00:07Z"')
_EVENT = ('"specversion": "1.0", "id": "e1", "source": "product", "type": "api_calls", "subject": "pr_1", '
          '"time": "2026-01-05T10:00:07Z"')
UNUSUAL_LINES = {  # what a JSON decoder may read differently from the detailed gate, spelled as raw lines
    "plain": "{%s}" % _PLAIN,
    "spaces around colons": "{%s}" % _PLAIN.replace('": ', '" : '),
    "a key given twice, same value": '{%s, "event_id": "e1"}' % _PLAIN,
    "a key given twice, other value": '{%s, "quantity": 6}' % _PLAIN,
    "properties null": '{%s, "properties": null}' % _PLAIN,
    "properties empty": '{%s, "properties": {}}' % _PLAIN,
    "properties twice": '{%s, "properties": {"a": 1}, "properties": {"a": 2}}' % _PLAIN,
    "a key inside properties twice": '{%s, "properties": {"a": 1, "a": 2}}' % _PLAIN,
    "an integer past 64 bits in properties": '{%s, "properties": {"a": 123456789012345678901234567890}}' % _PLAIN,
    "a number past a double in properties": '{%s, "properties": {"a": 1e400}}' % _PLAIN,
    "properties nested 70 deep": '{%s, "properties": %s}' % (_PLAIN, '{"a": ' * 70 + "1" + "}" * 70),
    "properties an array": '{%s, "properties": [1]}' % _PLAIN,
    "quantity true": "{%s}" % _PLAIN.replace('"quantity": 5', '"quantity": true'),
    "quantity 5.0": "{%s}" % _PLAIN.replace('"quantity": 5', '"quantity": 5.0'),
    "quantity 5e0": "{%s}" % _PLAIN.replace('"quantity": 5', '"quantity": 5e0'),
    "quantity past 64 bits": "{%s}" % _PLAIN.replace('"quantity": 5', '"quantity": 123456789012345678901234567890'),
    "quantity -0": "{%s}" % _PLAIN.replace('"quantity": 5', '"quantity": -0'),
    "an escaped NUL": "{%s}" % _PLAIN.replace('"e1"', '"e\\u0000"'),
    "an escaped key": "{%s}" % _PLAIN.replace('"event_id"', '"event\\u005fid"'),
    "a lone surrogate": "{%s}" % _PLAIN.replace('"e1"', '"e\\ud800"'),
    "an escaped quote and colon": "{%s}" % _PLAIN.replace('"e1"', '"e\\":1"'),
    "trailing text": "{%s} x" % _PLAIN,
    "a byte order mark": "\ufeff{%s}" % _PLAIN,
    "unknown field": '{%s, "extra": 1}' % _PLAIN,
    "event_time null": "{%s}" % _PLAIN.replace('"2026-01-05T10:00:07Z"', "null"),
    "event: plain": '{%s, "data": {"quantity": 5}}' % _EVENT,
    "event: quantity twice in data": '{%s, "data": {"quantity": 5, "quantity": 6}}' % _EVENT,
    "event: data twice": '{%s, "data": {"quantity": 5}, "data": {"quantity": 6}}' % _EVENT,
    "event: data null": '{%s, "data": null}' % _EVENT,
    "event: content type null": '{%s, "datacontenttype": null}' % _EVENT,
    "event: content type with a colon": '{%s, "datacontenttype": "a:b"}' % _EVENT,
    "event: quantity true": '{%s, "data": {"quantity": true}}' % _EVENT,
    "event: specversion twice": '{%s, "specversion": "0.3"}' % _EVENT,
}


@pytest.mark.parametrize("name", sorted(UNUSUAL_LINES))
@pytest.mark.parametrize("fmt", ["ndjson", "cloudevents"])
def test_an_unusual_line_fast_or_declined_gives_the_detailed_result(fmt, name):
    line = UNUSUAL_LINES[name].encode()
    if fmt == "ndjson":
        detailed = list(parse_ndjson(CTX, [(2, line)], validate=lambda record: validate_usage(record)))
        fast, fused = _well_formed_row(line, 2), parse_ndjson_chunk(CTX, [(2, line)])
    else:
        detailed = list(parse_cloudevents(CTX, [(2, line)]))
        fast, fused = well_formed_cloudevent_row(line, 2), parse_cloudevents_chunk(CTX, [(2, line)])
    assert chunk_state(fused) == chunk_state(pack_usage(detailed))
    if fast is not None:
        assert len(detailed) == 1 and (fast[0], fast[1], fast[2]) == (detailed[0].row, detailed[0].key_hash,
                                                                       detailed[0].month)


def test_the_unusual_lines_that_are_plain_take_the_fast_path():
    for name in ("plain", "spaces around colons", "properties null", "properties empty", "quantity -0"):
        assert _well_formed_row(UNUSUAL_LINES[name].encode(), 2) is not None, name
    for name in ("event: plain", "event: content type with a colon"):
        assert well_formed_cloudevent_row(UNUSUAL_LINES[name].encode(), 2) is not None, name
    for name in ("a key given twice, same value", "a key given twice, other value", "properties twice",
                 "an escaped NUL", "a number past a double in properties", "quantity true", "quantity 5.0"):
        assert _well_formed_row(UNUSUAL_LINES[name].encode(), 2) is None, name
    for name in ("event: quantity twice in data", "event: data twice", "event: specversion twice"):
        assert well_formed_cloudevent_row(UNUSUAL_LINES[name].encode(), 2) is None, name
