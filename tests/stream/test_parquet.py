"""Parquet out: every export's Parquet equals its CSV; the facts archive read back with DuckDB and proven exact."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ledger.projector.exports import EXPORTS


@pytest.fixture
def db_url(example_db_url) -> str:
    """This module's tests run on a copy of the basic example's store (replayed once through the real ingest)."""
    return example_db_url


@pytest.fixture
def example_store(ledger):
    ledger("project", check_exit=0)
    return ledger


def _as_csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _same(cell: str, value) -> bool:
    if isinstance(value, decimal.Decimal):
        return cell != "" and decimal.Decimal(cell) == value
    return cell == _as_csv_cell(value)


def test_every_export_as_parquet_equals_its_csv(example_store, tmp_path):
    assert len(EXPORTS) >= 7  # generic over the registry: whatever it knows is covered here
    for name in sorted(EXPORTS):
        rows = list(csv.reader(io.StringIO(example_store("export", name, check_exit=0).stdout)))
        path = tmp_path / f"{name}.parquet"
        example_store("export", name, "--format", "parquet", "--output", str(path), check_exit=0)
        table = pq.read_table(path)
        assert table.column_names == rows[0], name
        records = table.to_pylist()
        assert len(records) == len(rows) - 1, name
        for row, record in zip(rows[1:], records):
            assert all(_same(cell, record[column]) for cell, column in zip(row, rows[0])), (name, row, record)
        types = dict(zip(table.column_names, table.schema.types))
        for column, kind in types.items():
            if column.endswith("_cents"):
                assert kind == pa.int64(), (name, column)
            if column.endswith("_at") or column in ("valid_from", "valid_to"):
                assert kind == pa.timestamp("us", tz="UTC"), (name, column, kind)


def test_parquet_export_needs_an_output_path(example_store):
    result = example_store("export", "customer-month", "--format", "parquet")
    assert result.returncode == 2 and "--output" in result.stderr


def test_archive_read_with_duckdb_matches_usage_facts_and_grows_by_new_files_only(example_store, conn, tmp_path):
    archive = tmp_path / "archive"
    first = json.loads(example_store("archive", "facts", "--output", str(archive), "--json", check_exit=0).stdout)
    assert first["run"] == 1 and first["rows"]["usage"] > 0
    duck = duckdb.connect()
    got = duck.execute(
        f"SELECT month, count(*), sum(quantity) FROM read_parquet('{archive}/usage/*/*.parquet',"
        " hive_partitioning = true) GROUP BY month ORDER BY month").fetchall()
    want = conn.execute("SELECT to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM'), count(*), sum(quantity)"
                        " FROM usage_facts GROUP BY 1 ORDER BY 1").fetchall()
    assert [(m, c, int(s)) for m, c, s in got] == [(m, c, int(s)) for m, c, s in want]
    kinds = duck.execute(f"DESCRIBE SELECT * FROM read_parquet('{archive}/usage/*/*.parquet')").fetchall()
    types = {name: kind for name, kind, *_ in kinds}
    assert types["quantity"] == "BIGINT" and types["event_time"] == "TIMESTAMP WITH TIME ZONE"
    invoices = duck.execute(f"DESCRIBE SELECT * FROM read_parquet('{archive}/invoices/*/*.parquet')").fetchall()
    assert dict((n, k) for n, k, *_ in invoices)["total_cents"] == "BIGINT"
    example_store("verify", "--archive", str(archive), check_exit=0)

    files_before = {p: p.read_bytes() for p in archive.rglob("*.parquet")}
    again = json.loads(example_store("archive", "facts", "--output", str(archive), "--json", check_exit=0).stdout)
    assert again["run"] == 2 and again["rows"]["usage"] == 0  # only the first run's own fact is new
    late = tmp_path / "late.ndjson"
    late.write_text(json.dumps({"event_id": "late-1", "source": "product", "source_customer_id": "pr_1",
                                "meter": "api_calls", "quantity": 7, "event_time": "2026-03-02T00:00:00Z"}) + "\n")
    example_store("ingest", "usage", str(late), check_exit=0)
    third = json.loads(example_store("archive", "facts", "--output", str(archive), "--json", check_exit=0).stdout)
    assert third["run"] == 3 and third["rows"]["usage"] == 1
    assert all(p.read_bytes() == data for p, data in files_before.items())  # earlier files untouched
    new = {str(p.relative_to(archive)) for p in archive.rglob("*.parquet")} - {
        str(p.relative_to(archive)) for p in files_before}
    assert new == {f["path"] for f in again["files"]} | {f["path"] for f in third["files"]}
    nothing = json.loads(example_store("archive", "facts", "--output", str(archive), "--json").stdout)
    verified = json.loads(example_store("verify", "--archive", str(archive), "--json", check_exit=0).stdout)
    assert verified["ok"] and verified["runs"] == 4 and nothing["run"] == 4
    assert verified["rows"]["usage"] == conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0]


def test_verify_archive_finds_a_changed_a_missing_and_a_stray_file(example_store, tmp_path):
    archive = tmp_path / "archive"
    example_store("archive", "facts", "--output", str(archive), check_exit=0)
    usage_files = sorted(archive.glob("usage/*/*.parquet"))
    table = pq.read_table(usage_files[0])
    quantities = table.column("quantity").to_pylist()
    quantities[0] += 1  # one unit more, a well-formed file otherwise
    pq.write_table(table.set_column(table.column_names.index("quantity"), "quantity",
                                    pa.array(quantities, pa.int64())), usage_files[0])
    usage_files[1].unlink()
    (archive / "usage" / "month=2099-01").mkdir()
    pq.write_table(table, archive / "usage" / "month=2099-01" / "extra.parquet")
    result = example_store("verify", "--archive", str(archive), "--json")
    assert result.returncode == 1
    differences = json.loads(result.stdout)["differences"]
    relative = lambda p: str(p.relative_to(archive))
    assert any(relative(usage_files[0]) in d and "sha256 differs" in d for d in differences)
    assert any(relative(usage_files[0]) in d and "quantity" in d for d in differences)
    assert any(relative(usage_files[1]) in d and "missing" in d for d in differences)
    assert any("extra.parquet" in d and "no run wrote it" in d for d in differences)
