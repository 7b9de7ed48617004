"""Records that come from memory (a message broker's batch, a test) rather than a file.

They go through the same parsers, validation, dedup and quarantine as `ledger ingest`, one batch at a time,
inside the caller's transaction when it has one (as a savepoint of it), so the caller can write its own
bookkeeping, such as a consumer's offsets, in the same transaction as the facts.

Each record is one item, numbered by the caller (a Kafka offset, say): unlike a file's blank line, which
separates nothing, an empty record is a record, and it is quarantined as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Iterator

from ledger.commands.ingest import FORMATS, IngestReport
from ledger.domain.facts import KINDS
from ledger.ingest.cloudevents import parse_cloudevents
from ledger.ingest.facts import parse_facts
from ledger.ingest.records import RecordContext, raw_text
from ledger.ingest.usage import parse_ndjson_chunk
from ledger.store.appender import Candidate, Rejection, append_batch, write_quarantine
from ledger.store.usage import SeenKeys, UsageChunk, append_usage, pack_usage, screen_batch

Record = tuple[int, bytes]  # (number, the record's bytes)
MEMORY_FORMATS = ("ndjson", "cloudevents")  # a CSV record means nothing without its file's header
MAX_NUMBER = 2**31 - 1  # a usage fact keeps its record's number in an integer column (`usage_facts.line`)


class _RawText(Mapping):
    """The text of a batch's records by number, decoded only for the few a conflict has to name."""

    def __init__(self, records: Sequence[Record]):
        self._by_number = dict(records)

    def __getitem__(self, number: int) -> str:
        return raw_text(self._by_number[number])

    def __contains__(self, number: object) -> bool:
        return number in self._by_number

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_number)

    def __len__(self) -> int:
        return len(self._by_number)


def check_format(kind: str, fmt: str) -> None:
    """Refuse a kind and format that records from memory cannot carry."""
    if kind not in FORMATS:
        raise ValueError(f"unknown kind {kind!r} (one of {', '.join(FORMATS)})")
    if fmt not in MEMORY_FORMATS or fmt not in FORMATS[kind]:
        accepted = [f for f in FORMATS[kind] if f in MEMORY_FORMATS]
        raise ValueError(f"{kind} records cannot be read as {fmt} (accepted: {', '.join(accepted)})")


def _split_empty(records: Sequence[Record]) -> tuple[list[Record], list[Rejection]]:
    kept, empty = [], []
    for number, data in records:
        if data.strip():
            kept.append((number, data))
        else:
            empty.append(Rejection(number, raw_text(data), "empty record: no value"))
    return kept, empty


def append_records(conn, kind: str, fmt: str, ctx: RecordContext, records: Sequence[Record], report: IngestReport,
                   *, seen: SeenKeys | None = None, look_up_all: bool = False) -> bool:
    """Append one batch of records as facts, counting them into `report`; every record is appended, counted as a
    duplicate, or quarantined (with `ctx.source_file` and its number). Returns whether the next batch should look
    every usage key up (this one repeated facts stored before the run's screen could see them)."""
    check_format(kind, fmt)
    if kind == "usage" and records and not all(0 <= number <= MAX_NUMBER for number, _ in records):
        raise ValueError(f"usage records are numbered 0..{MAX_NUMBER}: a fact keeps its number as its line")
    kept, empty = _split_empty(records)
    report.read += len(records)
    if kind == "usage":
        return _append_usage(conn, fmt, ctx, kept, empty, report, seen, look_up_all)
    with conn.transaction():
        if kind == "credits":
            from ledger.commands.credits import ingest_credit_history

            read_before = report.read
            ingest_credit_history(conn, ctx, kept, report)
            report.read = read_before  # counted above, with the empty ones
            with conn.cursor() as cur:
                report.quarantined += write_quarantine(cur, kind, ctx.source_file, empty)
            return False
        candidates: list[Candidate] = []
        rejections: list[Rejection] = list(empty)
        for item in parse_facts(kind, fmt, ctx, kept):
            (candidates if type(item) is Candidate else rejections).append(item)
        report.add(append_batch(conn, KINDS[kind], candidates, rejections, source_file=ctx.source_file))
    return False


def _usage_chunk(fmt: str, ctx: RecordContext, records: list[Record]) -> UsageChunk:
    if fmt == "ndjson":
        return parse_ndjson_chunk(ctx, records)
    return pack_usage(parse_cloudevents(ctx, records))


def _append_usage(conn, fmt: str, ctx: RecordContext, kept: list[Record], empty: list[Rejection],
                  report: IngestReport, seen: SeenKeys | None, look_up_all: bool) -> bool:
    chunk = _usage_chunk(fmt, ctx, kept)
    chunk.rejections.extend(empty)
    chunk.raw_lines = _RawText(kept)  # type: ignore[assignment]  (read by number, like the dict it stands for)
    screened = screen_batch([chunk], seen or SeenKeys(len(kept)))
    outcome = append_usage(conn, screened, source_file=ctx.source_file, recorded_at_json=ctx.recorded_at_json,
                           look_up_all=look_up_all)
    report.appended += outcome.appended
    report.duplicates += outcome.duplicates
    report.conflicts += outcome.conflicts
    report.quarantined += outcome.quarantined
    if outcome.appended:
        if report.first_position is None:
            report.first_position = outcome.first_position
        report.last_position = outcome.last_position
    return outcome.looked_up_all and outcome.repeats_stored > 0
