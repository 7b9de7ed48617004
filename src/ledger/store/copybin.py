"""PostgreSQL binary COPY rows built directly as bytes: the hot path's one Python cost per field.

Formats (PostgreSQL docs, "COPY ... Binary Format"): a header, then per row an int16 field count and,
per field, an int32 length and the value's binary send format; a -1 length is NULL.
"""

from __future__ import annotations

import struct
import uuid
from datetime import datetime, timedelta, timezone

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_INT8 = struct.Struct(">iq")  # length 8 + value
_LEN = struct.Struct(">i")
INT8_FIELD = _INT8.pack
LENGTH = _LEN.pack
NULL = _LEN.pack(-1)
_MICROSECOND = timedelta(microseconds=1)


def text_field(value: str) -> bytes:
    data = value.encode()
    return _LEN.pack(len(data)) + data


def bytes_field(value: bytes) -> bytes:
    return _LEN.pack(len(value)) + value


def uuid_field(value: uuid.UUID | bytes) -> bytes:
    return b"\x00\x00\x00\x10" + (value if isinstance(value, bytes) else value.bytes)


def timestamptz_field(moment: datetime) -> bytes:
    """Microseconds since 2000-01-01 UTC."""
    return _INT8.pack(8, (moment - PG_EPOCH) // _MICROSECOND)


def row_count(n: int) -> bytes:
    return struct.pack(">h", n)
