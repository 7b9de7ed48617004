"""`ledger ingest`: formats, compression, stdin, permanent dedup, the report and its exit codes."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.builders import line, link, usage
from tests.conftest import write_lines


def report(result) -> dict:
    return json.loads(result.stdout)


def test_gzip_is_detected_by_content(ledger, conn, tmp_path):
    path = tmp_path / "usage.data"  # no telling extension: the magic bytes decide
    path.write_bytes(gzip.compress("\n".join(line(usage(i)) for i in range(100)).encode()))
    assert report(ledger("ingest", "usage", str(path), "--json", check_exit=0))["appended"] == 100


def test_standard_input(ledger, conn):
    data = "\n".join(line(usage(i)) for i in range(10)) + "\n"
    result = report(ledger("ingest", "usage", "-", "--json", input=data, check_exit=0))
    assert result["read"] == 10 and result["appended"] == 10 and result["file"] == "-"


def test_gzip_on_standard_input(ledger, conn):
    data = gzip.compress(("\n".join(line(usage(i)) for i in range(10)) + "\n").encode())
    result = ledger("ingest", "usage", "-", "--json", input=data)
    assert result.returncode == 0 and b'"appended": 10' in result.stdout


def test_dedup_is_permanent_across_files_and_time(ledger, conn, tmp_path):
    ledger("ingest", "usage", str(write_lines(tmp_path / "jan.ndjson", [line(usage(1)), line(usage(2))])),
           check_exit=0)
    # years later, a replay of one old event inside a new file: counted, not appended
    later = write_lines(tmp_path / "later.ndjson", [line(usage(3)), line(usage(1)), line(usage(3))])
    result = report(ledger("ingest", "usage", str(later), "--json", check_exit=0))
    assert (result["read"], result["appended"], result["duplicates"]) == (3, 1, 2)
    assert conn.execute("SELECT count(*) FROM usage_facts").fetchone()[0] == 3


def test_the_same_event_id_from_another_source_is_another_fact(ledger, conn, tmp_path):
    path = write_lines(tmp_path / "a.ndjson", [line(usage(1, source="product")), line(usage(1, source="gateway"))])
    assert report(ledger("ingest", "usage", str(path), "--json", check_exit=0))["appended"] == 2


def test_valid_records_beside_bad_ones_are_appended_and_exit_is_3(ledger, conn, tmp_path):
    path = write_lines(tmp_path / "mixed.ndjson", [line(usage(1)), "not json", line(usage(2, quantity=-1)),
                                                    line(usage(3))])
    result = ledger("ingest", "usage", str(path), "--json")
    assert result.returncode == 3
    r = report(result)
    assert (r["read"], r["appended"], r["quarantined"]) == (4, 2, 2)
    rows = conn.execute("SELECT line_number, field, reason, raw_text, source_file FROM quarantine ORDER BY 1").fetchall()
    assert [(row[0], row[1]) for row in rows] == [(2, None), (3, "quantity")]
    assert rows[0][3] == "not json" and rows[0][4] == str(path)


def test_report_has_rate_and_elapsed(ledger, tmp_path):
    r = report(ledger("ingest", "usage", str(write_lines(tmp_path / "a.ndjson", [line(usage(1))])), "--json"))
    for key in ("read", "appended", "duplicates", "conflicts", "quarantined", "seconds", "events_per_second"):
        assert key in r


def test_human_report_and_structured_log(ledger, tmp_path):
    path = str(write_lines(tmp_path / "a.ndjson", [line(usage(1))]))
    result = ledger("ingest", "usage", path, check_exit=0)
    assert "read 1 record, appended 1 fact, 0 duplicates, 0 conflicts, 0 quarantined" in result.stdout
    assert result.stderr == ""  # off a terminal the CLI logs nothing unless LEDGER_LOG_LEVEL asks
    again = ledger("ingest", "usage", path, check_exit=0, extra_env={"LEDGER_LOG_LEVEL": "INFO"})
    event = json.loads(again.stderr.strip().splitlines()[-1])  # JSON log: stderr is not a terminal
    assert event["event"] == "usage_ingested" and event["duplicates"] == 1


def test_csv_by_extension_and_cloudevents_by_flag(ledger, conn, tmp_path):
    csv_path = tmp_path / "u.csv"
    csv_path.write_text("event_id,source,source_customer_id,meter,quantity,event_time\n"
                        "c1,product,pr_1,api_calls,2,2026-01-05T10:00:00Z\n")
    assert report(ledger("ingest", "usage", str(csv_path), "--json", check_exit=0))["appended"] == 1
    ce = write_lines(tmp_path / "events.json", [json.dumps(
        {"specversion": "1.0", "id": "ce1", "source": "product", "subject": "pr_1", "type": "api_calls",
         "time": "2026-01-05T10:00:00Z", "data": {"quantity": 4}})])
    r = report(ledger("ingest", "usage", str(ce), "--format", "cloudevents", "--json", check_exit=0))
    assert r["appended"] == 1 and r["format"] == "cloudevents"
    assert conn.execute("SELECT quantity FROM usage_facts WHERE event_id = 'ce1'").fetchone()[0] == 4


@pytest.mark.slow  # a large file
def test_a_large_file_streams_through_worker_processes(ledger, conn, tmp_path):
    # above the parallel threshold: parsed in worker processes, appended in order
    lines = [line(usage(i, source_customer_id=f"pr_{i % 50}", properties={"pad": "x" * 60})) for i in range(60_000)]
    lines[30_000] = "garbage"
    path = write_lines(tmp_path / "big.ndjson", lines)
    assert path.stat().st_size > 8 << 20
    r = report(ledger("ingest", "usage", str(path), "--json"))
    assert (r["appended"], r["quarantined"]) == (59_999, 1)
    positions = [p for (p,) in conn.execute("SELECT position FROM usage_facts ORDER BY event_id")]
    event_ids = [e for (e,) in conn.execute("SELECT event_id FROM usage_facts ORDER BY position")]
    assert event_ids == sorted(event_ids)  # file order is position order
    assert conn.execute("SELECT line_number FROM quarantine").fetchone()[0] == 30_001
    assert len(positions) == 59_999


def test_other_kinds_in_csv_and_ndjson(ledger, conn, tmp_path):
    links = write_lines(tmp_path / "links.ndjson", [json.dumps(link()), json.dumps(link(scid="pr_2"))])
    assert report(ledger("ingest", "identities", str(links), "--json", check_exit=0))["appended"] == 2
    attrs = tmp_path / "attrs.csv"
    attrs.write_text("customer_id,effective_from,plan,region\ncus_1,2025-12-01T00:00:00Z,growth,\n")
    assert report(ledger("ingest", "attributes", str(attrs), "--json", check_exit=0))["appended"] == 1
    stored = conn.execute("SELECT attrs FROM attribute_facts").fetchone()[0]
    assert stored == {"plan": "growth", "region": None}  # empty CSV cell = null = clears
    wrong = ledger("ingest", "prices", str(attrs))
    assert wrong.returncode == 2 and "prices cannot be read as csv" in wrong.stderr
