"""`ledger verify --archive DIR`: proof that an archive holds exactly the store's facts, no more, no fewer.

1. The archive's runs, as recorded by their facts, follow one another from position 0 without gap or overlap.
2. Every recorded file is present with the sha256 recorded when it was written; no Parquet file is unrecorded.
3. For each run and dataset, the store's rows at the run's positions, grouped by month, are exactly the
   recorded files of that run, dataset and month, compared value by value (types included).
Together: the archive's rows are the store's facts up to the last run's position, each once. Facts appended
after that are reported as not yet archived (the next `ledger archive facts` adds them), not as a difference.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from ledger.warehouse.archive import BY_NAME, DATASETS, archive_id, file_sha256, parquet_files, recorded_runs, \
    split_by_month


@dataclass
class ArchiveVerification:
    archive_id: str
    directory: str
    runs: int = 0
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    archived_to_position: int = 0
    unarchived_positions: int = 0  # positions after the last run (facts not archived yet)
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


def verify_archive(conn: psycopg.Connection, directory: str) -> ArchiveVerification:
    root = Path(directory).absolute()
    identity = archive_id(root, create=False)
    result = ArchiveVerification(identity, str(root))
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        runs = recorded_runs(conn, identity)
        files = conn.execute("SELECT run, path, dataset, month, row_count, sha256 FROM archive_file_facts"
                             " WHERE archive_id = %s ORDER BY run, path", (identity,)).fetchall()
        head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()[0]
        result.runs, result.files = len(runs), len(files)
        expected_from = 0
        for run, first, last in runs:
            if first != expected_from:
                result.differences.append(f"run {run} starts after position {first}, not {expected_from}")
            expected_from = last
        result.archived_to_position = expected_from
        # the archive's own run facts come after the positions they cover
        result.unarchived_positions = max(0, head - expected_from)
        _check_files(root, files, result)
        by_run: dict[int, dict[tuple[str, str], str]] = defaultdict(dict)
        for run, path, dataset, month, _, _ in files:
            by_run[run][(dataset, month)] = path
        for run, first, last in runs:
            for dataset in DATASETS:
                _compare(conn, root, dataset.name, run, first + 1, last, by_run[run], result)
    return result


def _check_files(root: Path, files, result: ArchiveVerification) -> None:
    recorded = set()
    for run, path, dataset, month, rows, sha256 in files:
        recorded.add(path)
        full = root / path
        if not full.exists():
            result.differences.append(f"{path} (run {run}) is missing")
        elif file_sha256(full) != sha256:
            result.differences.append(f"{path} (run {run}) was changed since it was written: sha256 differs")
    for path in sorted(parquet_files(root) - recorded):
        result.differences.append(f"{path} is in the archive but no run wrote it")


def _compare(conn, root: Path, name: str, run: int, first: int, last: int, files: dict[tuple[str, str], str],
             result: ArchiveVerification) -> None:
    store = dict(split_by_month(BY_NAME[name].read_sorted(conn, first, last)))
    months = {month for dataset, month in files if dataset == name}
    for month in sorted(set(store) - months):
        result.differences.append(f"{name} {month}: {store[month].num_rows} facts of run {run} "
                                  f"(positions {first}-{last}) are in no file")
    for month in sorted(months):
        path = files[(name, month)]
        full = root / path
        if not full.exists():
            continue  # reported already
        archived = pq.read_table(full)
        result.rows[name] = result.rows.get(name, 0) + archived.num_rows
        expected = store.get(month)
        if expected is None:
            result.differences.append(f"{path}: {archived.num_rows} rows the store does not hold")
        elif not archived.equals(expected):
            result.differences.append(f"{path}: {_difference(archived, expected)}")


def _difference(archived: pa.Table, expected: pa.Table) -> str:
    if archived.num_rows != expected.num_rows:
        return f"{archived.num_rows} rows, the store has {expected.num_rows}"
    if archived.schema != expected.schema:
        return f"columns {archived.schema.names} / types differ from the store's"
    for name in expected.column_names:
        a, e = archived.column(name).to_pylist(), expected.column(name).to_pylist()
        if a != e:
            at = next(i for i, (x, y) in enumerate(zip(a, e)) if x != y)
            position = expected.column("position")[at].as_py()
            return f"position {position}: {name} is {a[at]!r} in the archive, {e[at]!r} in the store"
    return "differs from the store"
