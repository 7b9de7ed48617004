"""`ledger archive facts --output DIR`: the store's facts as Parquet files partitioned by month, incrementally.

An archive is a directory with an id (`_ledger_archive.json`) and one folder per dataset, Hive-partitioned
by month (`usage/month=2026-01/run-000001-0001.parquet`), readable by DuckDB, Spark and pandas:
- `usage`: every usage fact, typed (quantity int64, event_time a UTC timestamp), by the month of its event_time;
- `facts`: every row of the events table (every other fact, each usage batch, each archive run): position,
  topic, stream id and version, recorded_at, the stored state as JSON text, chain hash; by recorded month;
- `invoices`, `credits`: those facts' typed columns (cents int64), by invoice period and by month issued.
Each run archives the positions after the previous run's last, up to the store's head in one snapshot, and
is recorded as a `ledger.FactsArchived` fact (run, positions, every file's rows and sha256): a second run adds
only new files. `ledger.warehouse.verify` proves an archive against the store.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from ledger.domain.facts import FACTS_ARCHIVED
from ledger.errors import ArchiveError
from ledger.ingest.records import RecordContext
from ledger.store.appender import append_batch
from ledger.warehouse.arrow import query_table
from ledger.warehouse.export import write_atomically

ID_FILE = "_ledger_archive.json"
WINDOW = 2_000_000  # positions read per query: bounds memory whatever the run's size


@dataclass(frozen=True)
class Dataset:
    """One folder of the archive: a SELECT of the store with `position` and `month` columns, month dropped on write."""

    name: str
    select: str  # {range}: the position condition

    def query(self, first: int, last: int) -> tuple[sql.Composable, tuple]:
        """The dataset's rows at positions first..last."""
        text = f"SELECT * FROM ({self.select}) d WHERE position BETWEEN %s AND %s"
        params: tuple = (first, last)
        # no ORDER BY: PostgreSQL's sort of a million wide rows spilled to disk and cost more than the rest;
        # `read_sorted` orders them in Arrow instead
        return sql.SQL(text), params  # type: ignore[arg-type]

    def read_sorted(self, conn: psycopg.Connection, first: int, last: int) -> pa.Table:
        """The dataset's rows at positions first..last, as Arrow, in position order."""
        query, params = self.query(first, last)
        return query_table(conn, query, params).sort_by("position")


DATASETS = (
    Dataset("usage", "SELECT position, event_id, source, source_customer_id, meter, quantity, event_time, line,"
                     " properties, to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM') AS month FROM usage_facts"),
    Dataset("facts", "SELECT notification_id AS position, topic, originator_id, originator_version,"
                     " ledger_recorded_at(state) AS recorded_at, convert_from(state, 'UTF8') AS state, chain_hash,"
                     " to_char(ledger_recorded_at(state) AT TIME ZONE 'UTC', 'YYYY-MM') AS month"
                     " FROM ledger_events"),
    Dataset("invoices", "SELECT position, invoice_id, source, source_customer_id, period, issued_at, currency,"
                        " total_cents, period AS month FROM invoice_facts"),
    Dataset("credits", "SELECT position, credit_id, customer_id, invoice_id, amount_cents, reason, memo, actor,"
                       " issued_at, to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month FROM credit_facts"),
)
BY_NAME = {d.name: d for d in DATASETS}


@dataclass
class ArchiveReport:
    archive_id: str
    directory: str
    run: int | None = None
    from_position: int = 0
    to_position: int = 0
    files: list[dict] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    position: int | None = None  # of the run's fact
    seconds: float = 0.0

    @property
    def facts_per_second(self) -> float:
        facts = self.rows.get("usage", 0) + self.rows.get("facts", 0)
        return facts / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3), "facts_per_second": round(self.facts_per_second, 1)}


def archive_id(directory: Path, *, create: bool) -> str:
    """The archive's id, kept in the directory (created on the first run)."""
    path = directory / ID_FILE
    if path.exists():
        try:
            return str(uuid.UUID(json.loads(path.read_text())["archive_id"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ArchiveError(f"{path}: not a ledger archive id file ({error})") from None
    if not create:
        raise ArchiveError(f"{directory}: not a ledger archive (no {ID_FILE})")
    directory.mkdir(parents=True, exist_ok=True)
    identity = str(uuid.uuid4())
    path.write_text(json.dumps({"archive_id": identity}) + "\n")
    return identity


def recorded_runs(conn: psycopg.Connection, identity: str) -> list[tuple[int, int, int]]:
    """(run, from_position, to_position) of the archive's recorded runs, in order."""
    return conn.execute("SELECT run, from_position, to_position FROM archive_run_facts WHERE archive_id = %s"
                        " ORDER BY run", (identity,)).fetchall()


def archive_facts(conn: psycopg.Connection, directory: str, *, now: datetime, currency: str = "USD") -> ArchiveReport:
    """Write the facts appended since the archive's last run and record the run; nothing new, nothing written."""
    started = time.perf_counter()
    root = Path(directory).absolute()
    identity = archive_id(root, create=True)
    report = ArchiveReport(identity, str(root))
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"ledger-archive:{identity}",))
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot: a prefix of the store
            runs = recorded_runs(conn, identity)
            done = runs[-1][2] if runs else 0
            head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()[0]
            report.from_position, report.to_position = done, head
            if head <= done:
                report.seconds = time.perf_counter() - started
                return report
            report.run = len(runs) + 1
            report.files = _write_run(conn, root, report.run, done + 1, head, report.rows)
        payload = {"archive_id": identity, "run": report.run, "from_position": done, "to_position": head,
                   "files": report.files}
        ctx = RecordContext(f"ledger archive facts {root}", now, currency)
        outcome = append_batch(conn, FACTS_ARCHIVED, [ctx.candidate(FACTS_ARCHIVED, payload, None, "")],
                               source_file=ctx.source_file, quarantine_conflicts=False)
        if not outcome.appended:
            raise ArchiveError(f"run {report.run} of archive {identity} is already recorded: another archive run "
                               "wrote this directory at the same time")
        report.position = outcome.appended[0][1]
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"ledger-archive:{identity}",))
    report.seconds = time.perf_counter() - started
    return report


def _write_run(conn: psycopg.Connection, root: Path, run: int, first: int, last: int, rows: dict[str, int]) -> list[dict]:
    files = []
    for window, start in enumerate(range(first, last + 1, WINDOW), 1):
        end = min(last, start + WINDOW - 1)
        for dataset in DATASETS:
            table = dataset.read_sorted(conn, start, end)
            rows[dataset.name] = rows.get(dataset.name, 0) + table.num_rows
            for month, part in split_by_month(table):
                relative = f"{dataset.name}/month={month}/run-{run:06d}-{window:04d}.parquet"
                path = root / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(part, str(path))
                files.append({"path": relative, "dataset": dataset.name, "month": month, "rows": part.num_rows,
                              "first_position": start, "last_position": end, "sha256": file_sha256(path)})
    return files


def split_by_month(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """The table's rows per month (the month column dropped: the folder names it), months in order."""
    if not table.num_rows:
        return []
    months = table.column("month")
    rest = table.drop_columns(["month"])
    return [(month, rest.filter(pc.equal(months, month))) for month in sorted(pc.unique(months).to_pylist())]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def parquet_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}
