"""The binary COPY row of `usage_facts`: its one public home, written by ingest's parsers and read by the store.

A row is the column count, the position (eight zero bytes until the appender draws it), then event_id, source,
source_customer_id, meter (text), quantity (int8), event_time (timestamptz as microseconds since 2000-01-01 UTC),
line (int4) and properties (jsonb text, or NULL). `encode_fields` is the hot path's encoder (values already bytes
and microseconds); `encode_row` takes Python values; `decode_row` and `row_key` read rows back on the slow path.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta
from typing import NamedTuple

import orjson

from ledger.store import copybin

COLUMNS = ("position", "event_id", "source", "source_customer_id", "meter", "quantity", "event_time", "line",
           "properties")
# A row starts with its field count and its position, written by the appender once positions are drawn
# (a DEFAULT nextval() per row cost PostgreSQL 0.4–0.6 µs of its ~2.5 µs per row: measured).
ROW_HEAD = copybin.row_count(len(COLUMNS)) + b"\x00\x00\x00\x08" + bytes(8)
POSITION_AT = 6  # offset of the position's 8 bytes in a row


def encode_fields(e: bytes, s: bytes, c: bytes, m: bytes, quantity: int, micros: int, line: int,
                  properties: bytes | None) -> bytes:
    """A row from its fields as bytes (text UTF-8 encoded; event_time in microseconds since 2000-01-01 UTC).

    One `struct` pack per row, its layout chosen by the four text fields' lengths (a few layouts in a file); it
    ends with the properties' length (-1: NULL), their bytes appended.
    """
    lengths = (len(e), len(s), len(c), len(m))
    layout = _LAYOUTS.get(lengths) or _layout(lengths)
    row = layout.pack(ROW_HEAD, lengths[0], e, lengths[1], s, lengths[2], c, lengths[3], m, 8, quantity, 8, micros,
                      4, line, -1 if properties is None else len(properties))
    return row if properties is None else row + properties


_LAYOUTS: dict[tuple[int, int, int, int], struct.Struct] = {}
MAX_LAYOUTS = 4096  # ids of every length in one file: past this, layouts are built and not kept


def _layout(lengths: tuple[int, int, int, int]) -> struct.Struct:
    e, s, c, m = lengths
    layout = struct.Struct(f">{len(ROW_HEAD)}si{e}si{s}si{c}si{m}siqiqiIi")
    if len(_LAYOUTS) < MAX_LAYOUTS:
        _LAYOUTS[lengths] = layout
    return layout


def encode_row(event_id: str, source: str, customer: str, meter: str, quantity: int, moment: datetime,
               line: int, properties: bytes | None) -> bytes:
    """A row from Python values (the position is left zero: the appender writes it)."""
    return encode_fields(event_id.encode(), source.encode(), customer.encode(), meter.encode(), quantity,
                         (moment - copybin.PG_EPOCH) // timedelta(microseconds=1), line, properties)


class UsageRow(NamedTuple):
    """A valid usage record, encoded as its binary COPY row (every column but the position)."""

    line: int
    key_hash: int  # hash((source, event_id)): screens for records seen before in this run
    month: str
    row: bytes

    def fact_payload(self) -> dict:
        """The record's canonical payload (SPEC §3.1), decoded from its row."""
        v = decode_row(self.row)
        payload = {"event_id": v.event_id, "source": v.source, "source_customer_id": v.source_customer_id,
                   "meter": v.meter, "quantity": v.quantity,
                   "event_time": v.event_time.isoformat(timespec="microseconds")}
        if v.properties is not None:
            payload["properties"] = orjson.loads(v.properties)
        return payload


class StoredUsage(NamedTuple):
    """A usage row's values, as compared between two records with one key."""

    position: int | None
    event_id: str
    source: str
    source_customer_id: str
    meter: str
    quantity: int
    event_time: datetime
    line: int
    properties: str | None


def decode_row(row: bytes) -> StoredUsage:
    """The values of a row built by `encode_fields` (slow path only: conflicts, lookups)."""
    values, at = [], 2
    for _ in COLUMNS:
        n = int.from_bytes(row[at:at + 4], "big", signed=True)
        at += 4
        values.append(None if n < 0 else row[at:at + n])
        at += max(n, 0)
    pos, e, s, c, m, q, t, line, p = values
    return StoredUsage(int.from_bytes(pos, "big") or None, e.decode(), s.decode(), c.decode(), m.decode(),
                       int.from_bytes(q, "big", signed=True),
                       copybin.PG_EPOCH + timedelta(microseconds=int.from_bytes(t, "big", signed=True)),
                       int.from_bytes(line, "big"), None if p is None else p.decode())


def row_key(row: bytes) -> tuple[str, str]:
    """(source, event_id) of an encoded row."""
    n = int.from_bytes(row[14:18], "big")
    at = 18 + n
    m = int.from_bytes(row[at:at + 4], "big")
    return row[at + 4:at + 4 + m].decode(), row[18:18 + n].decode()
