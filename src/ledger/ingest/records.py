"""What every parser shares: the record context, rejections that name the field, candidate building, and the
one gate every JSON record and CSV cell passes before it can become a fact.

The gate (`load_json`, `check_cell`, `plainly_safe`) refuses, by name, what the store cannot hold or cannot
read back unambiguously: invalid UTF-8, U+0000 (NUL: PostgreSQL text and jsonb cannot hold it), lone UTF-16
surrogate escapes, an object with a key given twice (which value is meant?), and JSON nested deeper than
`MAX_DEPTH` levels. A record refused here is quarantined with its raw text; the records beside it go on.
"""

from __future__ import annotations

import json
import re
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


MAX_DEPTH = 64  # levels of nested objects and arrays in one record, the record itself included
NUL_REASON = "contains U+0000 (NUL), a character the ledger cannot store (PostgreSQL text and jsonb refuse it)"
KEY_END = re.compile(rb'"[ \t\r\n]*:')  # the end of an object key (or of an escaped quote in a string)


def load_json(line: bytes | str) -> Any:
    """A JSON value from one record's text, or a RecordError naming what makes it unfit to store."""
    raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
    if isinstance(line, bytes):
        decode_line(line)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise _json_error(raw, error) from None
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        depth = nesting_depth(value)
        if depth > MAX_DEPTH:
            raise RecordError(f"is JSON nested {depth} levels deep; the ledger keeps at most {MAX_DEPTH} levels")
    if b"\\u" in raw:
        where = _nul_path(value)
        if where is not None:
            raise RecordError(NUL_REASON, where or None)
    if _may_repeat_a_key(raw, value):
        repeated = _repeated_key(raw)
        if repeated is not None:
            raise RecordError(f"the key {repeated!r} appears twice in one object: the record is ambiguous "
                              "(which value is meant?)", repeated)
    return value


def _json_error(raw: bytes, error: orjson.JSONDecodeError) -> RecordError:
    text = str(error)
    if b"\x00" in raw:
        return RecordError(f"{NUL_REASON} (a raw 0x00 byte at byte {raw.index(0)})")
    if "surrogate" in text:
        return RecordError(f"malformed JSON: an escape \\uD800-\\uDFFF that is not half of a surrogate pair "
                           f"names no character (at byte {error.pos})")
    if "control character" in text:
        return RecordError(f"malformed JSON: an unescaped control character inside a string (at byte {error.pos}); "
                           "JSON strings must escape characters below U+0020")
    if "depth limit" in text:
        return RecordError(f"is JSON nested more than {MAX_DEPTH} levels deep; the ledger keeps at most "
                           f"{MAX_DEPTH} levels")
    if "byte order mark" in text:
        return RecordError("malformed JSON: a UTF-8 byte order mark (BOM) inside the file, not at its start")
    return RecordError(f"malformed JSON: {text}")


def nesting_depth(value: Any) -> int:
    """Levels of nested objects and arrays (a scalar is 0), walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            children = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return deepest


def _nul_path(value: Any) -> str | None:
    """The dotted path of the first string (key or value) holding U+0000; '' for the record itself; None if none."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if type(item) is str:
            if "\x00" in item:
                return path
        elif type(item) is dict:
            for key, child in item.items():
                inner = f"{path}.{key}" if path else key
                if "\x00" in key:
                    return inner.replace("\x00", "\\u0000")
                stack.append((child, inner))
        elif type(item) is list:
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return None


def _count_keys(value: Any) -> int:
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            count += len(item)
            stack.extend(v for v in item.values() if type(v) in (dict, list))
        elif type(item) is list:
            stack.extend(v for v in item if type(v) in (dict, list))
    return count


def _may_repeat_a_key(raw: bytes, value: Any) -> bool:
    # Every key ends in `"` then `:`; so does an escaped quote followed by a colon inside a string. More of those
    # ends than keys parsed means a key may have been given twice (orjson keeps the last): look exactly.
    return len(KEY_END.findall(raw)) != _count_keys(value)


class _RepeatedKey(Exception):
    pass


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen[key] = value
    return seen


def _repeated_key(raw: bytes) -> str | None:
    try:
        json.loads(raw, object_pairs_hook=_no_repeats, parse_int=len)  # numbers do not matter here
    except _RepeatedKey as repeated:
        return repeated.args[0]
    return None


def plainly_safe(line: bytes, keys: int, nested: bytes | None, colons_in_strings: int) -> bool:
    """The hot path's share of the gate: True when a line that orjson parsed into an object of `keys` keys, whose
    top-level strings hold `colons_in_strings` colons and whose one nested value (if any) dumps canonically as
    `nested`, can hold no NUL, no repeated key and no deep nesting. False sends the record to `load_json`.

    NUL can only arrive as a `\\u0000` escape (orjson refuses a raw 0x00 byte). Without any `\\u` escape every
    colon of the line is either the one after a key or a character of a string, as in the canonical dump; so the
    line has exactly the colons of the object parsed when no key is given twice, and more when one is.
    """
    if b"\\" in line and b"\\u" in line:  # one byte is found faster than two: most lines hold no escape
        return False
    expected = keys + colons_in_strings
    if nested is not None:
        if nested.count(b"{") + nested.count(b"[") >= MAX_DEPTH:
            return False
        expected += nested.count(b":")
    return line.count(b":") == expected


def check_cell(name: str, cell: str) -> None:
    """A CSV cell's share of the gate: no U+0000."""
    if "\x00" in cell:
        raise RecordError(NUL_REASON, name)
