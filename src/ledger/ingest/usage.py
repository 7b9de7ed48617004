"""Usage records (SPEC §3.1) from NDJSON, CSV or CloudEvents, validated by hand on the hot path.

This is the one parser that must run at 100k+ records/s, so it checks the contract directly
instead of through pydantic; `tests/unit/test_usage_contract.py` holds it to the same rules.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from array import array
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

import msgspec
import orjson

from ledger.domain.facts import AMOUNT_LIMIT
from ledger.domain.time import TimestampError, parse_timestamp
from ledger.ingest.records import (RecordContext, RecordError, check_cell, decode_line, load_json, plainly_safe,
                                   raw_text, rejection)
from ledger.ingest.timestamps import plain_instant, plain_micros
from ledger.store.appender import Rejection
from ledger.store.usage import UsageChunk
from ledger.store.usage_rows import UsageRow, encode_fields, encode_row

REQUIRED = ("event_id", "source", "source_customer_id", "meter", "quantity", "event_time")
ALLOWED = frozenset((*REQUIRED, "properties"))
METER = re.compile(r"^[a-z0-9_]{1,64}\Z")  # \Z: `$` would let a trailing newline through
MAX_ID = 128
MAX_QUANTITY = AMOUNT_LIMIT

Parsed = UsageRow | Rejection
dumps, SORT_KEYS = orjson.dumps, orjson.OPT_SORT_KEYS


def _text_field(record: dict, name: str, limit: int = MAX_ID) -> str:
    value = record[name]
    if not isinstance(value, str):
        raise RecordError(f"must be a string, got {_type_name(value)}", name)
    if not value:
        raise RecordError("must not be empty", name)
    if len(value) > limit:
        raise RecordError(f"is {len(value)} characters, longer than {limit}", name)
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else {bool: "boolean", int: "integer", float: "number", str: "string",
                                          list: "array", dict: "object"}.get(type(value), type(value).__name__)


def check_quantity(value: Any, name: str = "quantity") -> int:
    if type(value) is not int:
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise RecordError(f"must be an integer, got {value}", name)
            if value.is_integer() and abs(value) >= MAX_QUANTITY:  # JSON integers past 2^64 arrive as floats
                raise RecordError(f"must be below 2^53, got {int(value)}", name)
            if value.is_integer():
                raise RecordError(f"must be an integer, got the number {value!r} (written with a fraction or "
                                  "exponent)", name)
            raise RecordError(f"must be a whole number, got fractional {value!r}", name)
        raise RecordError(f"must be an integer, got {_type_name(value)}", name)
    if value < 0:
        raise RecordError(f"must not be negative, got {value}", name)
    if value >= MAX_QUANTITY:
        raise RecordError(f"must be below 2^53, got {value}", name)
    return value


def check_meter(value: Any, name: str = "meter") -> str:
    if not isinstance(value, str) or not METER.match(value):
        raise RecordError(f"{value!r} is not a meter code ([a-z0-9_]{{1,64}})", name)
    return value


def check_timestamp(value: Any, name: str) -> datetime:
    try:
        return parse_timestamp(value)
    except TimestampError as error:
        raise RecordError(str(error), name) from None


def validate_usage(record: Any) -> tuple[dict, tuple]:
    """A usage record's canonical payload and typed row, or a RecordError naming field and reason."""
    fast = _validate_common_case(record)
    if fast is not None:
        return fast
    return _validate_naming_the_problem(record)


def _validate_common_case(record: Any) -> tuple[dict, tuple] | None:
    """The well-formed record in a few type checks; None sends anything unusual to the detailed checks."""
    if type(record) is not dict or not record.keys() <= ALLOWED or len(record) < 6:
        return None
    get = record.get
    event_id, source, customer = get("event_id"), get("source"), get("source_customer_id")
    meter, quantity, text = get("meter"), get("quantity"), get("event_time")
    if not (type(event_id) is str and type(source) is str and type(customer) is str and type(meter) is str
            and type(quantity) is int and type(text) is str
            and 0 < len(event_id) <= MAX_ID and 0 < len(source) <= MAX_ID and 0 < len(customer) <= MAX_ID
            and 0 <= quantity < MAX_QUANTITY and METER.match(meter)):
        return None
    properties = get("properties")
    if properties is not None and type(properties) is not dict:
        return None
    instant = plain_instant(text)
    if instant is None:
        return None
    moment = instant[0]
    if len(text) == 27 and text[10] == "T" and text[26] == "Z":
        canonical = text[:26] + "+00:00"  # the canonical text already, but for its offset's spelling
    else:
        canonical = moment.isoformat(timespec="microseconds")
    payload = {"event_id": event_id, "source": source, "source_customer_id": customer, "meter": meter,
               "quantity": quantity, "event_time": canonical}
    if properties is not None:
        payload["properties"] = properties
    return payload, (event_id, source, customer, meter, quantity, moment)


def _validate_naming_the_problem(record: Any) -> tuple[dict, tuple]:
    if type(record) is not dict:
        raise RecordError(f"must be a JSON object, got {_type_name(record)}")
    keys = record.keys()
    if not keys <= ALLOWED:
        unknown = sorted(keys - ALLOWED)
        raise RecordError(f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}", unknown[0])
    for name in REQUIRED:
        if name not in record or record[name] is None:
            raise RecordError("missing required field", name)
    event_id = _text_field(record, "event_id")
    source = _text_field(record, "source")
    customer = _text_field(record, "source_customer_id")
    meter = check_meter(record["meter"])
    quantity = check_quantity(record["quantity"])
    moment = check_timestamp(record["event_time"], "event_time")
    payload = {
        "event_id": event_id, "source": source, "source_customer_id": customer, "meter": meter,
        "quantity": quantity, "event_time": moment.isoformat(timespec="microseconds"),
    }
    properties = record.get("properties")
    if properties is not None:
        if type(properties) is not dict:
            raise RecordError(f"must be an object, got {_type_name(properties)}", "properties")
        payload["properties"] = properties
    return payload, (event_id, source, customer, meter, quantity, moment)


def usage_row(payload: dict, row: tuple, line: int) -> UsageRow:
    """The hot path's output: the record's typed row encoded for COPY, its key's hash and its month."""
    event_id, source, customer, meter, quantity, moment = row
    properties = payload.get("properties")
    encoded = encode_row(event_id, source, customer, meter, quantity, moment, line,
                         None if properties is None else dumps(properties, option=SORT_KEYS))
    return UsageRow(line, hash((source, event_id)), payload["event_time"][:7], encoded)


_METERS_SEEN: set[str] = set()  # valid meter codes met by this process (a few): a set lookup instead of the regex


def _is_meter_code(meter: str) -> bool:
    if METER.match(meter) is None:
        return False
    if len(_METERS_SEEN) < 1024:
        _METERS_SEEN.add(meter)
    return True


class _PlainRecord(msgspec.Struct, forbid_unknown_fields=True):
    """A usage record's fields with their JSON types and nothing else, decoded in one C call; `properties` is
    UNSET when absent (the key count matters to `plainly_safe`). Limits are checked after, in Python."""

    event_id: str
    source: str
    source_customer_id: str
    meter: str
    quantity: int
    event_time: str
    properties: dict | None | msgspec.UnsetType = msgspec.UNSET


_decode_plain = msgspec.json.Decoder(_PlainRecord).decode
_fields_of = msgspec.structs.astuple
# what a line that is not plainly a usage record raises: malformed JSON, a field missing, unknown or of another
# type, invalid UTF-8 (msgspec decodes strings with Python's codec), nesting past the interpreter's limit
_NOT_PLAIN = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
UNSET = msgspec.UNSET


def _well_formed_row(line: bytes, number: int) -> tuple[bytes, int, str] | None:
    """The common well-formed record straight to its row, in one pass; None sends it to the detailed checks.

    Accepts exactly what `_validate_common_case` accepts: the six fields (and optional properties object),
    strings within their limits, a meter code, an integer quantity in range, and an event_time that
    `plain_instant` decides (every valid RFC 3339 shape). msgspec checks the JSON types in C (strictly: no
    float or boolean for the integer); invalid UTF-8 raises and takes the detailed path.
    """
    try:
        event_id, source, customer, meter, quantity, text, properties = _fields_of(_decode_plain(line))
    except _NOT_PLAIN:
        return None
    if not _within_limits(event_id, source, customer, meter, quantity):
        return None
    instant = plain_micros(text)
    if instant is None:
        return None
    colons = f"{event_id}{source}{customer}{text}".count(":")  # one count of the strings joined: half the cost of four
    if properties is UNSET or properties is None:
        if not plainly_safe(line, 6 if properties is UNSET else 7, None, colons):
            return None
        p = None
    else:
        try:
            p = dumps(properties, option=SORT_KEYS)
        except TypeError:  # nested past orjson's limit, or an integer past 64 bits: the detailed checks decide
            return None
        if not plainly_safe(line, 7, p, colons):
            return None
    return _row(event_id, source, customer, meter, quantity, instant, number, p)


def _row(event_id: str, source: str, customer: str, meter: str, quantity: int, instant: tuple[int, str],
         number: int, properties: bytes | None = None) -> tuple[bytes, int, str]:
    """A checked record's COPY row (what `usage_row` encodes), its key's hash and its UTC month."""
    row = encode_fields(event_id.encode(), source.encode(), customer.encode(), meter.encode(), quantity, instant[0],
                        number, properties)
    return row, hash((source, event_id)), instant[1]


def _within_limits(event_id: str, source: str, customer: str, meter: str, quantity: int) -> bool:
    """The fast paths' checks of the fields but the time, on values whose types their decoders fixed (msgspec's
    typed fields; a CSV's cells and its parsed digits): ids within limits, a meter code, a quantity in range."""
    return (0 < len(event_id) <= MAX_ID and 0 < len(source) <= MAX_ID and 0 < len(customer) <= MAX_ID
            and 0 <= quantity < MAX_QUANTITY and (meter in _METERS_SEEN or _is_meter_code(meter)))


def parse_ndjson_chunk(ctx: RecordContext, lines: Iterable[tuple[int, bytes]]) -> UsageChunk:
    """`pack_usage(parse_ndjson(...))` in one loop: the well-formed records go straight into the chunk."""
    return pack_fast(lines, _well_formed_row, lambda number, line: _parse_in_detail(number, line, validate_usage))


FastRow = Callable[[bytes, int], "tuple[bytes, int, str] | None"]
DetailedRow = Callable[[int, bytes], "Parsed | None"]


def pack_fast(lines: Iterable[tuple[int, bytes]], fast_row: FastRow, detailed: DetailedRow) -> UsageChunk:
    """A chunk of numbered lines, each through FAST_ROW (the common well-formed record, straight to its row) or,
    when that declines, through DETAILED (the validator that names the problem); blank lines are no records."""
    blob, ends, hashes, months, rejections, read = bytearray(), array("I"), array("q"), set(), [], 0
    add_end, add_hash, add_month = ends.append, hashes.append, months.add
    for number, line in lines:
        fast = fast_row(line, number)
        if fast is None:
            if not line.strip():
                continue
            item = detailed(number, line)
            if item is None:  # blank to the detailed reader too (e.g. Unicode white space alone)
                continue
            if type(item) is not UsageRow:
                rejections.append(item)
                read += 1
                continue
            fast = item.row, item.key_hash, item.month
        read += 1
        blob += fast[0]
        add_end(len(blob))
        add_hash(fast[1])
        add_month(fast[2])
    return UsageChunk(bytes(blob), ends, hashes, months, rejections, read)


def parse_ndjson(ctx: RecordContext, lines: Iterable[tuple[int, bytes]],
                 validate: Callable[[Any], tuple[dict, tuple]] = validate_usage) -> Iterator[Parsed]:
    fast = validate is validate_usage
    for number, line in lines:
        if not line.strip():
            continue
        if fast:
            row = _well_formed_row(line, number)
            if row is not None:
                yield UsageRow(number, row[1], row[2], row[0])
                continue
        yield _parse_in_detail(number, line, validate)


def _parse_in_detail(number: int, line: bytes, validate: Callable[[Any], tuple[dict, tuple]]) -> Parsed:
    """A record that is not plainly well formed: validated field by field, its rejection naming the problem."""
    try:
        payload, row = validate(load_json(line))
    except RecordError as error:
        return rejection(number, raw_text(line), error, raw_bytes=None if _is_utf8(line) else line)
    return usage_row(payload, row, number)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# -- CSV -------------------------------------------------------------------------------------
INTEGER = re.compile(r"^[+-]?\d+$")


MAX_CSV_RECORD_LINES = 1_000  # a quoted cell left open would otherwise swallow the rest of the file
MAX_CSV_RECORD_BYTES = 8 << 20


def csv_rows(lines: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    """The CSV records of numbered lines (RFC 4180: a quoted cell may hold line breaks), each with its first line.

    A record whose quotes stay open for more than MAX_CSV_RECORD_LINES lines or MAX_CSV_RECORD_BYTES bytes, or
    to the end of the input, is yielded alone (its row is then rejected as malformed) and the lines after it are
    read again as records of their own.
    """
    pending: deque[tuple[int, bytes]] = deque()
    source = iter(lines)
    while True:
        if not pending:
            item = next(source, None)
            if item is None:
                return
            pending.append(item)
        number, first = pending[0]
        if first.count(b'"') % 2 == 0:
            pending.popleft()
            yield number, first
            continue
        joined, quotes, used, size = [first], first.count(b'"'), 1, len(first)
        while quotes % 2:
            if used == len(pending):
                item = next(source, None) if used < MAX_CSV_RECORD_LINES and size < MAX_CSV_RECORD_BYTES else None
                if item is None:
                    break
                pending.append(item)
            line = pending[used][1]
            joined.append(line)
            quotes += line.count(b'"')
            size += len(line) + 1
            used += 1
        if quotes % 2:  # never closed: the first line alone, then the others again
            pending.popleft()
            yield number, first
            continue
        for _ in range(used):
            pending.popleft()
        yield number, b"\n".join(joined)


def csv_records(lines: Iterable[tuple[int, bytes]], allowed: frozenset[str], required: Iterable[str],
                integer_fields: Iterable[str] = (), json_fields: Iterable[str] = ()) -> Iterator[
        tuple[int, str, dict | None, RecordError | None, bytes]]:
    """CSV rows as dicts (empty cell = null), after checking the header; yields (line, raw, record, error, bytes)."""
    integer_fields, json_fields = set(integer_fields), set(json_fields)
    header: list[str] | None = None
    for number, line in csv_rows(lines):
        try:
            text = decode_line(line)
        except RecordError as error:
            yield number, raw_text(line), None, error, line
            continue
        if header is None:
            if not text.strip():
                continue
            header = [h.strip() for h in next(csv.reader([text]))]
            unknown = [h for h in header if h not in allowed]
            missing = [r for r in required if r not in header]
            if unknown or missing or len(set(header)) != len(header):
                problem = (f"unknown column(s): {', '.join(map(repr, unknown))}" if unknown else
                           f"missing column(s): {', '.join(missing)}" if missing else "a column appears twice")
                from ledger.errors import InputFileError
                raise InputFileError("header", f"CSV header (line {number}) rejected: {problem}")
            continue
        if not text.strip():
            continue
        try:
            cells = next(csv.reader([text], strict=True))
        except csv.Error as error:
            yield number, text, None, RecordError(f"malformed CSV row: {error}"), line
            continue
        if len(cells) != len(header):
            yield number, text, None, RecordError(
                f"malformed CSV row: {len(cells)} cells for {len(header)} columns"), line
            continue
        record: dict[str, Any] = {}
        error: RecordError | None = None
        for name, cell in zip(header, cells):
            try:
                check_cell(name, cell)
            except RecordError as failure:
                error = error or failure
                continue
            if cell == "":
                record[name] = None
            elif name in integer_fields:
                digits = cell.strip()
                if not INTEGER.match(digits):
                    error = error or _csv_number_error(name, cell)
                elif len(digits.lstrip("+-")) > 20:  # far past any bound (and past int()'s digit limit)
                    error = error or RecordError(f"must be below 2^53, got a number of {len(digits)} digits", name)
                record[name] = int(digits) if INTEGER.match(digits) and len(digits) <= 21 else cell
            elif name in json_fields:
                try:
                    record[name] = load_json(cell)
                except RecordError as failure:
                    error = error or RecordError(f"must be JSON: {failure.reason}", name)
            else:
                record[name] = cell
        yield number, text, record, error, line


def _csv_number_error(name: str, cell: str) -> RecordError:
    try:
        float(cell)
        return RecordError(f"must be a whole number, got {cell!r}", name)
    except ValueError:
        return RecordError(f"must be an integer, got {cell!r}", name)


def parse_csv(ctx: RecordContext, lines: Iterable[tuple[int, bytes]]) -> Iterator[Parsed]:
    for number, text, record, error, line in csv_records(lines, ALLOWED, REQUIRED, ("quantity",), ("properties",)):
        if error is None:
            # CSV has no "absent": a null property cell is simply no properties
            if record is not None and record.get("properties", 0) is None:
                del record["properties"]
            try:
                payload, row = validate_usage(record)
            except RecordError as failure:
                error = failure
        if error is not None:
            yield rejection(number, text, error, raw_bytes=None if _is_utf8(line) else line)
            continue
        yield usage_row(payload, row, number)


class CsvColumns:
    """A checked usage CSV header: its text (to parse a row in detail) and where each field's cell is."""

    def __init__(self, number: int, line: bytes):
        text = decode_line(line)
        names = [h.strip() for h in next(csv.reader([text]))]
        self.header = (number, line)
        self.count = len(names)
        self.at = {name: i for i, name in enumerate(names)}
        for _ in csv_records([self.header], ALLOWED, REQUIRED):  # raises InputFileError for a bad header
            pass
        self.fields = tuple(self.at[name] for name in REQUIRED)
        self.properties = self.at.get("properties")


def csv_fast_row(columns: CsvColumns, line: bytes, number: int) -> tuple[bytes, int, str] | None:
    """A plain CSV row (no quote, CR, NUL or properties; an unsigned decimal quantity) straight to its row; None
    sends it to `parse_csv`'s detailed path. Without quotes or CR, `csv.reader` splits a line at its commas."""
    if b'"' in line or b"\r" in line or b"\x00" in line:
        return None
    try:
        cells = line.decode("utf-8").split(",")
    except UnicodeDecodeError:
        return None
    if len(cells) != columns.count or (columns.properties is not None and cells[columns.properties]):
        return None
    i_event, i_source, i_customer, i_meter, i_quantity, i_time = columns.fields
    digits = cells[i_quantity]
    if not (0 < len(digits) <= 16 and digits.isascii() and digits.isdigit()):
        return None
    event_id, source, customer, meter = cells[i_event], cells[i_source], cells[i_customer], cells[i_meter]
    quantity, text = int(digits), cells[i_time]
    if not _within_limits(event_id, source, customer, meter, quantity):
        return None
    instant = plain_micros(text)
    if instant is None:
        return None
    return _row(event_id, source, customer, meter, quantity, instant, number)


def parse_csv_block(ctx: RecordContext, columns: CsvColumns, lines: Iterable[tuple[int, bytes]]) -> UsageChunk:
    """CSV lines that are records of their own (every quoted cell closes on its line), after the header."""
    def detailed(number: int, line: bytes) -> Parsed | None:
        return next(parse_csv(ctx, [columns.header, (number, line)]), None)

    return pack_fast(lines, lambda line, number: csv_fast_row(columns, line, number), detailed)


def lines_stand_alone(block: bytes) -> bool:
    """True when no CSV record of BLOCK spans lines: every line holds an even number of quotes."""
    if b'"' not in block:
        return True
    return all(not line.count(b'"') % 2 for line in block.split(b"\n"))
