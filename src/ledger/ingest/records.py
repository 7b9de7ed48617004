"""What every parser shares: the record context, rejections that name the field, and candidate building."""

from __future__ import annotations


from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ledger.domain.facts import FactKind
from ledger.store.appender import Candidate, Rejection
from ledger.store.events import encode_recorded_at, encode_state


class RecordError(ValueError):
    """A record that fails its contract; `field` names the offending field when there is one."""

    def __init__(self, reason: str, field: str | None = None):
        self.reason, self.field = reason, field
        super().__init__(f"field '{field}': {reason}" if field else reason)


@dataclass
class RecordContext:
    """Where records come from and when they are recorded; shared by every record of one ingest."""

    source_file: str
    recorded_at: datetime
    currency: str = "USD"

    def __post_init__(self) -> None:
        self.recorded_at_json = encode_recorded_at(self.recorded_at)

    def candidate(self, kind: FactKind, payload: dict[str, Any], line: int | None, raw: str,
                  provenance: dict[str, Any] | None = None) -> Candidate:
        payload_json = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        if provenance is None:
            provenance = {"recorded_from": self.source_file, "recorded_line": line}
        state = encode_state(payload_json, provenance, self.recorded_at_json)
        return Candidate(kind.fact_id(payload).bytes, payload, state, line, raw)


def rejection(line: int | None, raw: str, error: RecordError, raw_bytes: bytes | None = None) -> Rejection:
    return Rejection(line, raw, str(error), field=error.field, raw_bytes=raw_bytes)


def decode_line(line: bytes) -> str:
    """The text of a line; invalid UTF-8 is a rejection naming the byte offset."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(f"invalid UTF-8 at byte {error.start}") from None


def raw_text(line: bytes) -> str:
    return line.decode("utf-8", "backslashreplace")
