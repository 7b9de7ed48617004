"""`ledger ingest KIND FILE`: stream a file into facts in batches, in file order, with a report (SPEC §7)."""

from __future__ import annotations

import gc
import queue
from contextlib import closing
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from collections import deque
from itertools import chain, islice
from typing import Callable, Iterable, Iterator

from ledger.domain.facts import KINDS
from ledger.errors import IngestStoppedError, InputFileError, LedgerError
from ledger.ingest.cloudevents import parse_cloudevents, parse_cloudevents_chunk
from ledger.ingest.pipeline import parse_in_workers, worker_count
from ledger.ingest.reader import InputSource, block_lines, infer_format, open_input
from ledger.ingest.records import RecordContext, raw_text
from ledger.ingest.usage import (CsvColumns, lines_stand_alone, parse_csv, parse_csv_block, parse_ndjson,
                                 parse_ndjson_chunk)
from ledger.store.appender import BatchOutcome, Candidate, Rejection, append_batch
from ledger.store.database import Database
from ledger.store.usage import ScreenedBatch, SeenKeys, UsageChunk, append_usage, pack_usage, screen_batch

INGEST_KINDS = ("usage", "identities", "attributes", "prices", "invoices", "credits")
FORMATS = {
    "usage": ("ndjson", "csv", "cloudevents"),
    "identities": ("ndjson", "csv"),
    "attributes": ("ndjson", "csv"),
    "prices": ("ndjson",),
    "invoices": ("ndjson",),
    "credits": ("ndjson",),
}


@dataclass
class IngestReport:
    kind: str
    file: str
    format: str
    read: int = 0
    appended: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    first_position: int | None = None
    last_position: int | None = None
    last_line: int | None = None  # the input line of the last fact appended
    refusals: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def add(self, outcome: BatchOutcome) -> None:
        """Counts one appended batch of facts (not usage): what it appended, found standing, or quarantined."""
        self.appended += len(outcome.appended)
        self.duplicates += len(outcome.duplicates)
        self.conflicts += len(outcome.conflicts)
        self.quarantined += outcome.quarantined
        if outcome.appended:
            if self.first_position is None:
                self.first_position = outcome.appended[0][1]
            self.last_position = outcome.appended[-1][1]
            self.last_line = outcome.appended[-1][0].line

    @property
    def empty(self) -> bool:
        return self.read == 0

    @property
    def exit_code(self) -> int:
        return 3 if self.quarantined else 0

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3),
                "events_per_second": round(self.events_per_second, 1), "exit_code": self.exit_code,
                "empty": self.empty}


Progress = Callable[[int, int | None], None]  # (records read so far, bytes consumed or None)


PARALLEL_MIN_BYTES = 8 << 20  # below this, worker processes cost more than they save
BLOCK_BYTES = 1 << 20  # what a parser worker is handed at a time (whole lines)
CHUNK = 5_000
USAGE_PARSERS = {"ndjson": parse_ndjson, "csv": parse_csv, "cloudevents": parse_cloudevents}


def parser_for(kind: str, fmt: str, ctx: RecordContext) -> Callable[[Iterable[tuple[int, bytes]]], Iterator]:
    """The record parser of a kind and format: numbered lines in, rows or candidates and rejections out."""
    if kind == "usage":
        return lambda lines: USAGE_PARSERS[fmt](ctx, lines)
    from ledger.ingest.facts import parse_facts  # the contracts (pydantic): not loaded for usage

    return lambda lines: parse_facts(kind, fmt, ctx, lines)


def usage_chunks(fmt: str, ctx: RecordContext, source: InputSource, chunk_size: int = CHUNK, *,
                 workers: int | None = None, queue_depth: int = 8) -> Iterator[UsageChunk]:
    """Every usage record of the input, parsed and packed in chunks, in file order.

    The input is read in blocks of whole lines that worker processes parse while this process appends; the
    blocks stay here until appended (a conflict's raw text is read back from them). A CSV's header is read
    here first; its blocks go to the workers while every line is a record of its own (each quoted cell closes
    on its line); from the first block where a quoted cell spans lines, the rest is parsed here in order.
    """
    parse = USAGE_PARSERS[fmt]
    if source.size is not None and source.size < PARALLEL_MIN_BYTES:
        yield from _chunks_in_process(parse, ctx, source.lines(), chunk_size)
        return
    blocks = source.blocks(BLOCK_BYTES)
    stand_alone: Callable[[bytes], bool] | None = None
    if fmt == "csv":
        columns, read_so_far = _csv_header(blocks)
        if columns is None:  # a header this fast path does not read (quoted, after undecodable lines): in order
            yield from _chunks_in_process(parse, ctx, chain(read_so_far, _lines_of(blocks)), chunk_size)
            return
        blocks = chain(read_so_far, blocks)

        def parse_block(first: int, block: bytes) -> UsageChunk:
            return parse_csv_block(ctx, columns, block_lines(first, block))

        stand_alone = lines_stand_alone
    else:
        chunk_parser = {"ndjson": parse_ndjson_chunk, "cloudevents": parse_cloudevents_chunk}[fmt]

        def parse_block(first: int, block: bytes) -> UsageChunk:
            return chunk_parser(ctx, block_lines(first, block))

    fed: deque[tuple[int, bytes]] = deque()
    spanning: list[tuple[int, bytes]] = []

    def to_workers() -> Iterator[tuple[int, bytes]]:
        for block in blocks:
            if stand_alone is not None and not stand_alone(block[1]):
                spanning.append(block)
                return
            fed.append(block)
            yield block

    for chunk in parse_in_workers(lambda items: parse_block(*items[0]), to_workers(), chunk_size=1,
                                  workers=worker_count(workers), queue_depth=queue_depth):
        chunk.block = fed.popleft()
        yield chunk
    if spanning:
        rest = chain([columns.header], block_lines(*spanning[0]), _lines_of(blocks))
        yield from _chunks_in_process(parse, ctx, rest, chunk_size)


def _lines_of(blocks: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    for block in blocks:
        yield from block_lines(*block)


def _csv_header(blocks: Iterator[tuple[int, bytes]]) -> tuple[CsvColumns | None, list]:
    """The CSV header from the first block, and that block's rest as a block; or None and the lines read so far
    when the header is not a plain first line (quoted, blank-looking, or after an undecodable line)."""
    first = next(blocks, None)
    if first is None:
        return None, []
    lines = list(block_lines(*first))
    at = next((i for i, (_, line) in enumerate(lines) if line.strip()), None)
    if at is None or b'"' in lines[at][1] or not _decodes_to_text(lines[at][1]):
        return None, lines
    columns = CsvColumns(*lines[at])  # InputFileError for a bad header, as the in-order reader raises
    rest = lines[at + 1:]
    return columns, ([(rest[0][0], b"".join(line + b"\n" for _, line in rest))] if rest else [])


def _decodes_to_text(line: bytes) -> bool:
    try:
        return bool(line.decode("utf-8").strip())
    except UnicodeDecodeError:
        return False


def _chunks_in_process(parse, ctx: RecordContext, lines: Iterable[tuple[int, bytes]],
                       chunk_size: int) -> Iterator[UsageChunk]:
    held: dict[int, bytes] = {}

    def kept(lines: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
        for number, line in lines:
            held[number] = line
            yield number, line

    records = parse(ctx, kept(lines))
    while items := list(islice(records, chunk_size)):
        last = items[-1].line
        raw = {n: raw_text(held.pop(n)) for n in [n for n in held if n <= last]}
        yield pack_usage(items, raw)


def ingest_file(db: Database, kind: str, path: str, fmt: str | None = None, *, now: datetime | None = None,
                progress: Progress | None = None, batch_size: int | None = None) -> IngestReport:
    """Append every valid record of the file as a fact; quarantine the rest; count duplicates."""
    fmt = infer_format(path, fmt)
    check_format(kind, fmt, path)
    source = open_input(path)
    try:
        return ingest_source(db, kind, source, fmt, now=now, progress=progress, batch_size=batch_size)
    finally:
        source.close()


def check_format(kind: str, fmt: str, name: str) -> None:
    if fmt not in FORMATS[kind]:
        raise InputFileError(name, f"{kind} cannot be read as {fmt} (accepted: {', '.join(FORMATS[kind])})")


def ingest_source(db: Database, kind: str, source: InputSource, fmt: str, *, now: datetime | None = None,
                  progress: Progress | None = None, batch_size: int | None = None) -> IngestReport:
    """Append every valid record of an opened input (a file, or a request body as it arrives); see ingest_file."""
    check_format(kind, fmt, source.name)
    report = IngestReport(kind, source.name, fmt)
    started = time.perf_counter()
    ctx = RecordContext(source.name, now or datetime.now(timezone.utc), db.settings.currency)
    try:
        if fmt != "csv" and source.first_byte() == b"[":
            raise InputFileError(source.name, f"is a JSON array; `ledger ingest` reads {fmt.upper()}: one JSON object"
                                              " per line (`jq -c '.[]' FILE` writes an array that way)")
        if kind == "usage":
            batch_size = batch_size or db.settings.batch_size
            with closing(usage_chunks(fmt, ctx, source, min(CHUNK, batch_size), workers=db.settings.ingest_workers,
                                      queue_depth=db.settings.ingest_queue)) as chunks:
                _ingest_usage(db, ctx, chunks, report, source, progress, batch_size)
        elif kind == "credits":
            from ledger.commands.credits import ingest_credit_history

            with db.connection() as conn:
                ingest_credit_history(conn, ctx, source.lines(), report)
        else:
            from ledger.ingest.facts import parse_facts  # the contracts (pydantic): not loaded for usage

            _ingest_batches(db, kind, ctx, parse_facts(kind, fmt, ctx, source.lines()), report, source,
                            progress, batch_size or db.settings.batch_size)
    except (Exception, KeyboardInterrupt) as error:
        stopped = stopped_error(report, error)
        if stopped is error:
            raise
        raise stopped from error
    finally:
        source.close()
    report.seconds = time.perf_counter() - started
    return report


def stopped_error(report: IngestReport, error: BaseException) -> BaseException:
    """The error to report for an ingest that stopped: the real cause on one line and, when batches committed
    before it, which facts stand and that a re-run of the file appends exactly the rest (exit 4)."""
    cause = describe_cause(error)
    if not report.appended:
        if isinstance(error, LedgerError):
            return error
        return InputFileError(report.file, f"{cause}; nothing was appended"
                                           + (f" ({report.quarantined} records quarantined)" if report.quarantined else ""))
    where = f"positions {report.first_position}–{report.last_position}" if report.first_position else "positions"
    line = f", the file's records up to line {report.last_line}" if report.last_line else ""
    return IngestStoppedError(
        f"{report.file}: stopped: {cause}. Before it, appended {report.appended} facts ({where}{line}; "
        f"{report.duplicates} duplicates, {report.quarantined} quarantined); they stand, and a re-run of the same "
        "file appends exactly the rest",
        appended=report.appended, first_position=report.first_position, last_position=report.last_position,
        last_line=report.last_line)


def describe_cause(error: BaseException) -> str:
    """One line naming what stopped an ingest."""
    import psycopg

    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, InputFileError):
        return error.reason
    first = next((ln.strip() for ln in str(error).splitlines() if ln.strip()), "")
    if isinstance(error, psycopg.OperationalError):
        return f"the connection to the database was lost ({first or type(error).__name__})"
    if isinstance(error, psycopg.Error):
        return f"the database refused a batch ({type(error).__name__}: {first})"
    if isinstance(error, LedgerError):
        return str(error)
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _ingest_usage(db: Database, ctx: RecordContext, chunks: Iterator[UsageChunk], report: IngestReport,
                  source: InputSource, progress: Progress | None, batch_size: int) -> None:
    """Append usage in batches of about `batch_size` records (whole chunks), one transaction each.

    The batches are screened here, in input order, and appended by a thread of their own, so the next batch
    is read and screened while PostgreSQL copies this one.
    """
    # gzip'd NDJSON is about ten times smaller than its records
    seen = SeenKeys.for_input(source.size * 10 if source.size and source.compressed else source.size)
    gc.freeze()  # millions of short-lived objects: keep the cyclic collector off the hot path
    with db.connection() as conn, _UsageAppender(conn, ctx, report, source, progress) as appender:
        batch: list[UsageChunk] = []
        records = 0
        for chunk in chunks:
            report.read += chunk.read
            batch.append(chunk)
            records += chunk.read
            if records >= batch_size:
                appender.submit(screen_batch(batch, seen))
                batch, records = [], 0
        if batch or report.read == 0:
            appender.submit(screen_batch(batch, seen))


class _UsageAppender:
    """Appends screened batches, in order, in a thread of its own; its first error is raised in the caller."""

    def __init__(self, conn, ctx: RecordContext, report: IngestReport, source: InputSource,
                 progress: Progress | None):
        self.conn, self.ctx, self.report, self.source, self.progress = conn, ctx, report, source, progress
        self.pending: queue.Queue[ScreenedBatch | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.look_up_all = False
        self.thread = threading.Thread(target=self._run, name="ledger-usage-appender", daemon=True)

    def __enter__(self) -> _UsageAppender:
        self.thread.start()
        return self

    def submit(self, screened: ScreenedBatch) -> None:
        self._raise_error()
        self.pending.put(screened)

    def __exit__(self, exc_type, exc, tb) -> None:
        self.pending.put(None)
        self.thread.join()
        if exc_type is None:
            self._raise_error()

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (screened := self.pending.get()) is not None:
            if self.error is None:
                try:
                    self._append(screened)
                except BaseException as error:  # raised again in the caller's thread
                    self.error = error

    def _append(self, screened: ScreenedBatch) -> None:
        report = self.report
        outcome = append_usage(self.conn, screened, source_file=self.ctx.source_file,
                               recorded_at_json=self.ctx.recorded_at_json, look_up_all=self.look_up_all)
        # a file that overlaps stored facts is looked up key by key until a batch finds none stored
        self.look_up_all = outcome.looked_up_all and outcome.repeats_stored > 0
        report.appended += outcome.appended
        report.duplicates += outcome.duplicates
        report.conflicts += outcome.conflicts
        report.quarantined += outcome.quarantined
        if outcome.appended:
            if report.first_position is None:
                report.first_position = outcome.first_position
            report.last_position, report.last_line = outcome.last_position, outcome.last_line
        if self.progress:
            self.progress(report.read, self.source.position())


def _ingest_batches(db: Database, kind: str, ctx: RecordContext, parsed: Iterator[Candidate | Rejection],
                    report: IngestReport,
                    source, progress: Progress | None, batch_size: int) -> None:
    fact_kind = KINDS[kind]
    gc.freeze()  # millions of short-lived records: keep the cyclic collector off the hot path
    with db.connection() as conn:
        candidates: list[Candidate] = []
        rejections: list[Rejection] = []

        def flush() -> None:
            report.add(append_batch(conn, fact_kind, candidates, rejections, source_file=ctx.source_file))
            candidates.clear()
            rejections.clear()
            if progress:
                progress(report.read, source.position())

        for item in parsed:
            report.read += 1
            if type(item) is Candidate:
                candidates.append(item)
            else:
                rejections.append(item)
            if len(candidates) + len(rejections) >= batch_size:
                flush()
        if candidates or rejections or report.read == 0:
            flush()
