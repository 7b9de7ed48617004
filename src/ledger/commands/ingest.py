"""`ledger ingest KIND FILE`: stream a file into facts in batches, in file order, with a report (SPEC §7)."""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

from ledger.domain.facts import KINDS, USAGE
from ledger.errors import InputFileError
from ledger.ingest.cloudevents import parse_cloudevents
from ledger.ingest.facts import CONTRACTS, parse_facts
from ledger.ingest.pipeline import parse_in_workers, worker_count
from ledger.ingest.reader import infer_format, open_input
from ledger.ingest.records import RecordContext
from ledger.ingest.usage import Parsed, parse_csv, parse_ndjson
from ledger.store.appender import Candidate, Rejection, append_batch
from ledger.store.database import Database

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
    refusals: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 3 if self.quarantined else 0

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3),
                "events_per_second": round(self.events_per_second, 1), "exit_code": self.exit_code}


Progress = Callable[[int, int | None], None]  # (records read so far, bytes consumed or None)


PARALLEL_MIN_BYTES = 8 << 20  # below this, worker processes cost more than they save
CHUNK = 5_000


def parser_for(kind: str, fmt: str, ctx: RecordContext) -> Callable[[Iterable[tuple[int, bytes]]], Iterator[Parsed]]:
    if kind == "usage":
        return {"ndjson": lambda ls: parse_ndjson(ctx, ls), "csv": lambda ls: parse_csv(ctx, ls),
                "cloudevents": lambda ls: parse_cloudevents(ctx, ls)}[fmt]
    return lambda ls: parse_facts(kind, fmt, ctx, ls)


def parsed_records(kind: str, fmt: str, ctx: RecordContext, source) -> Iterator[Parsed]:
    """Every record of the input, parsed, in file order; usage NDJSON and CloudEvents in worker processes.

    CSV keeps one process: its header must be read before any row can be parsed.
    """
    parse = parser_for(kind, fmt, ctx)
    parallel = kind == "usage" and fmt != "csv" and (source.size is None or source.size >= PARALLEL_MIN_BYTES)
    if not parallel:
        yield from parse(source.lines())
        return
    for packed in parse_in_workers(lambda lines: pack(parse(lines)), source.lines(), chunk_size=CHUNK,
                                   workers=worker_count()):
        yield from unpack(packed)


def pack(items: Iterable[Parsed]) -> tuple:
    """A chunk's results as a few flat lists: pickled between processes far faster than objects."""
    ids, states, lines, raws, fields, months, rejections = bytearray(), [], [], [], [], [], []
    for item in items:
        if type(item) is Candidate:
            ids += item.fact_id
            states.append(item.state)
            lines.append(item.line)
            raws.append(item.raw)
            fields.append(item.usage_fields)
            months.append(item.usage_month)
        else:
            rejections.append(item)
    return bytes(ids), states, lines, raws, fields, months, rejections


def unpack(packed: tuple) -> Iterator[Parsed]:
    ids, states, lines, raws, fields, months, rejections = packed
    for i, state in enumerate(states):
        yield Candidate(ids[16 * i:16 * i + 16], None, state, lines[i], raws[i], fields[i], months[i])
    yield from rejections


def ingest_file(db: Database, kind: str, path: str, fmt: str | None = None, *, now: datetime | None = None,
                progress: Progress | None = None, batch_size: int | None = None) -> IngestReport:
    """Append every valid record of the file as a fact; quarantine the rest; count duplicates."""
    fmt = infer_format(path, fmt)
    if fmt not in FORMATS[kind]:
        raise InputFileError(path, f"{kind} cannot be read as {fmt} (accepted: {', '.join(FORMATS[kind])})")
    source = open_input(path)
    report = IngestReport(kind, source.name, fmt)
    started = time.perf_counter()
    ctx = RecordContext(source.name, now or datetime.now(timezone.utc), db.settings.currency)
    try:
        if kind == "credits":
            from ledger.commands.credits import ingest_credit_history

            with db.connection() as conn:
                ingest_credit_history(conn, ctx, source.lines(), report)
        else:
            _ingest_batches(db, kind, ctx, parsed_records(kind, fmt, ctx, source), report, source,
                            progress, batch_size or db.settings.batch_size)
    finally:
        source.close()
    report.seconds = time.perf_counter() - started
    return report


def _ingest_batches(db: Database, kind: str, ctx: RecordContext, parsed: Iterator[Parsed], report: IngestReport,
                    source, progress: Progress | None, batch_size: int) -> None:
    fact_kind = KINDS[kind]
    gc.freeze()  # millions of short-lived records: keep the cyclic collector off the hot path
    with db.connection() as conn:
        candidates: list[Candidate] = []
        rejections: list[Rejection] = []

        def flush() -> None:
            outcome = append_batch(conn, fact_kind, candidates, rejections, source_file=ctx.source_file)
            report.appended += len(outcome.appended)
            report.duplicates += len(outcome.duplicates)
            report.conflicts += len(outcome.conflicts)
            report.quarantined += outcome.quarantined
            if outcome.appended:
                if report.first_position is None:
                    report.first_position = outcome.appended[0][1]
                report.last_position = outcome.appended[-1][1]
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
