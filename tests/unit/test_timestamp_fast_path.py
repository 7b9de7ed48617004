"""Every RFC 3339 shape takes the fast path, which decides exactly what the detailed validator decides.

`plain_micros` (a few layout checks and `datetime.fromisoformat`) must accept exactly the strings that
`parse_timestamp` (the regular expression and its messages) accepts, with the same instant and UTC month;
and the hot paths built on it (the one-pass NDJSON row, the common-case record of CSV and CloudEvents)
must give the very row the detailed checks give.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from ledger.domain.time import TimestampError, month_of, parse_timestamp
from ledger.ingest.cloudevents import parse_cloudevents
from ledger.ingest.records import RecordContext, RecordError
from ledger.ingest.timestamps import plain_instant, plain_micros
from ledger.ingest.usage import (
    _validate_common_case,
    _validate_naming_the_problem,
    _well_formed_row,
    parse_csv,
    parse_ndjson_chunk,
    usage_row,
)
from ledger.store.appender import Rejection
from ledger.store.copybin import PG_EPOCH
from ledger.store.usage import UsageRow
from tests.builders import usage

CTX = RecordContext("test.ndjson", datetime(2026, 11, 23, tzinfo=timezone.utc))
UTC = timezone.utc


def two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


# Timestamps of the RFC 3339 layout whose values range past what is valid: month 13, 30 February,
# hour 24, second 60, offset 24:00 or minute 60, years 1 and 9999 where an offset leaves the calendar.
shaped = st.builds(
    lambda year, month, day, sep, hour, minute, second, fraction, offset: (
        f"{year:04d}-{month}-{day}{sep}{hour}:{minute}:{second}{fraction}{offset}"),
    st.one_of(st.integers(0, 9999), st.sampled_from([1, 1999, 2000, 2024, 2026, 9999])),
    two(0, 13), st.one_of(two(0, 32), st.sampled_from(["01", "28", "29", "30", "31"])), st.sampled_from("Tt "),
    two(0, 25), two(0, 61), two(0, 61),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=12).map(lambda d: "." + d)),
    st.one_of(st.sampled_from(["Z", "z", "+00:00", "-00:00", "+01:00", "-01:00", "+14:00", "-12:00", "+05:30"]),
              st.builds(lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), two(0, 25), two(0, 61))),
)

# One edit of such a timestamp: a character replaced, inserted or removed, from an alphabet of the characters
# a near-miss is made of (other separators, letters, a newline, digits that are not ASCII).
NEAR_MISS = "0123456789-:.,+ TtZzW\n\x00\u0663\uff12\u00b9"


@st.composite
def near_miss(draw) -> str:
    text = draw(shaped)
    at = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from(NEAR_MISS))
    edit = draw(st.sampled_from(["replace", "insert", "delete"]))
    if edit == "insert":
        return text[:at] + char + text[at:]
    if edit == "delete":
        return text[:at] + text[at + 1:]
    return text[:at] + char + text[at + 1:]


timestamps = st.one_of(shaped, near_miss(), st.text(max_size=40))


def detailed(text: str) -> datetime | None:
    try:
        return parse_timestamp(text)
    except TimestampError:
        return None


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timestamps)
@example("2026-01-05T10:00:00Z\n")  # `$` would have let the newline through
@example("2026-01-05T10:00:00+05:75")
@example("2026-01-05T10:00:00.Z")
@example("2026-01-05T10:00:00,123Z")
@example("2026-01-05T10:00:00 +05:30")
@example("2026-01-05T10:00:00+0530")
@example("2026-01-05X10:00:00Z")
@example("\u0662026-01-05T10:00:00Z")
@example("0001-01-01T00:30:00+01:00")
@example("0001-01-02T00:30:00+01:00")
@example("9999-12-31T23:30:00-01:00")
@example("2026-03-01T00:30:00+01:00")
@example("2026-02-28T23:30:00-01:00")
@example("2026-01-31T23:59:59.9999999Z")  # rounding, not truncating, would leave January
@example("2026-01-31T23:59:59.9999999-00:00")
@example("2026-01-05T24:00:00Z")
@example("2026-06-30T23:59:60Z")
@example(" 2026-01-05T10:00:00Z")
@example("2026-01-05T10:00:00+24:00")
def test_the_fast_path_decides_exactly_what_the_detailed_validator_decides(text):
    fast, micros, slow = plain_instant(text), plain_micros(text), detailed(text)
    assert (fast is None) == (micros is None) == (slow is None), (text, fast, slow)
    if fast is not None:
        moment, month = fast
        assert moment == slow and moment.utcoffset() == timedelta(0)
        assert month == month_of(slow) == slow.isoformat()[:7] == micros[1]
        assert micros[0] == (slow - PG_EPOCH) // timedelta(microseconds=1)


@pytest.mark.parametrize("text,utc", [
    ("2026-01-05T10:00:07Z", "2026-01-05T10:00:07.000000+00:00"),
    ("2026-01-05T10:00:07.1Z", "2026-01-05T10:00:07.100000+00:00"),
    ("2026-01-05T10:00:07.123Z", "2026-01-05T10:00:07.123000+00:00"),
    ("2026-01-05T10:00:07.123456789Z", "2026-01-05T10:00:07.123456+00:00"),
    ("2026-01-05t10:00:07.999999999z", "2026-01-05T10:00:07.999999+00:00"),
    ("2026-01-05 10:00:07+02:00", "2026-01-05T08:00:07.000000+00:00"),
    ("2026-01-05T10:00:07.5-00:00", "2026-01-05T10:00:07.500000+00:00"),
    ("2026-02-01T00:30:00+01:00", "2026-01-31T23:30:00.000000+00:00"),
    ("2026-01-31T23:30:00-05:30", "2026-02-01T05:00:00.000000+00:00"),
    ("2025-12-31T23:59:59.999-00:01", "2026-01-01T00:00:59.999000+00:00"),
])
def test_every_shape_is_decided_on_the_fast_path(text, utc):
    moment, month = plain_instant(text)
    assert moment.astimezone(UTC).isoformat(timespec="microseconds") == utc
    assert month == utc[:7]


@pytest.mark.parametrize("text,words", [
    ("2026-01-05T10:00:00Z\n", "not an RFC 3339"),
    ("2026-01-05T10:00:00+05:60", "not an RFC 3339"),
    ("\u0662\u0660\u0662\u0666-01-05T10:00:00Z", "not an RFC 3339"),
    ("0001-01-01T00:30:00+01:00", "outside the years 0001–9999"),
    ("9999-12-31T23:30:00-01:00", "outside the years 0001–9999"),
])
def test_what_the_detailed_validator_refuses_and_why(text, words):
    assert plain_instant(text) is None
    with pytest.raises(TimestampError, match=words):
        parse_timestamp(text)


def _detailed_row(record: dict, line: int) -> UsageRow | None:
    try:
        payload, row = _validate_naming_the_problem(record)
    except RecordError:
        return None
    return usage_row(payload, row, line)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timestamps, st.sampled_from([None, {"b": 1, "a": [2]}]))
def test_the_hot_paths_give_the_detailed_row_for_every_timestamp(text, properties):
    """NDJSON's one-pass row, and the common-case record under CSV and CloudEvents, on any event_time."""
    record = usage(event_time=text, **({} if properties is None else {"properties": properties}))
    expected = _detailed_row(record, 12)

    one_pass = _well_formed_row(json.dumps(record).encode(), 12)
    assert (one_pass is None) == (expected is None), (text, expected)
    if one_pass is not None:
        encoded, key_hash, month = one_pass
        assert UsageRow(12, key_hash, month, encoded) == expected

    common = _validate_common_case(record)
    assert (common is None) == (expected is None)
    if common is not None:
        assert usage_row(*common, 12) == expected
        assert common == _validate_naming_the_problem(record)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(shaped, near_miss()).filter(lambda t: not any(c in t for c in "\r\n\x00")))
def test_every_format_gives_the_same_row_for_a_timestamp(text):
    """NDJSON, CSV and CloudEvents: the same fact for the same event_time, or a rejection naming its field."""
    record = usage(event_time=text)
    expected = _detailed_row(record, 2)

    chunk = parse_ndjson_chunk(CTX, [(2, json.dumps(record).encode())])
    header = b"event_id,source,source_customer_id,meter,quantity,event_time"
    cell = '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"') else text
    row = f"evt-000001,product,pr_1,api_calls,1,{cell}".encode()
    (csv_result,) = list(parse_csv(CTX, [(1, header), (2, row)]))
    event = {"specversion": "1.0", "id": "evt-000001", "source": "product", "type": "api_calls",
             "subject": "pr_1", "time": text}
    (cloud,) = list(parse_cloudevents(CTX, [(2, json.dumps(event).encode())]))
    if expected is None:
        assert chunk.count == 0
        for result, field in ((chunk.rejections[0], "event_time"), (csv_result, "event_time"), (cloud, "time")):
            assert isinstance(result, Rejection) and result.field == field, result
    else:
        assert (chunk.row(0), chunk.hashes[0], chunk.months) == (expected.row, expected.key_hash, {expected.month})
        assert csv_result == expected and cloud == expected


def test_an_offset_moves_the_month_of_the_fact():
    early, late = plain_instant("2026-03-01T01:00:00+02:00"), plain_instant("2026-02-28T23:00:00-02:00")
    assert (early[1], late[1]) == ("2026-02", "2026-03")
    assert late[0] - early[0] == timedelta(hours=2)
