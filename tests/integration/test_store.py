"""The fact store: idempotent appends, conflicts quarantined, immutability, one global order."""

from __future__ import annotations

import threading

import psycopg
import pytest

from ledger.domain.facts import USAGE_BATCH
from ledger.store.events import to_event
from tests.builders import line, usage
from tests.conftest import write_lines


def count(conn, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_duplicate_appends_nothing(ledger, conn, tmp_path):
    path = write_lines(tmp_path / "u.ndjson", [line(usage(1)), line(usage(2))])
    ledger("ingest", "usage", str(path), check_exit=0)
    before = count(conn, "ledger_events")
    again = ledger("ingest", "usage", str(path), "--json", check_exit=0)
    assert '"duplicates": 2' in again.stdout and '"appended": 0' in again.stdout
    assert count(conn, "ledger_events") == before == 1  # one batch event for the two facts
    assert count(conn, "usage_facts") == 2


def test_the_same_instant_with_another_offset_is_a_duplicate(ledger, conn, tmp_path):
    first = write_lines(tmp_path / "a.ndjson", [line(usage(1, event_time="2026-01-15T10:00:00Z"))])
    second = write_lines(tmp_path / "b.ndjson", [line(usage(1, event_time="2026-01-15T11:00:00.000000+01:00"))])
    ledger("ingest", "usage", str(first), check_exit=0)
    result = ledger("ingest", "usage", str(second), "--json", check_exit=0)
    assert '"duplicates": 1' in result.stdout


def test_a_conflict_appends_nothing_and_is_quarantined_naming_the_field(ledger, conn, tmp_path):
    ledger("ingest", "usage", str(write_lines(tmp_path / "a.ndjson", [line(usage(1, quantity=5))])), check_exit=0)
    position = conn.execute("SELECT position FROM usage_facts").fetchone()[0]
    result = ledger("ingest", "usage", str(write_lines(tmp_path / "b.ndjson", [line(usage(1, quantity=7))])),
                    "--json", check_exit=3)
    assert '"conflicts": 1' in result.stdout and '"appended": 0' in result.stdout
    assert count(conn, "ledger_events") == 1
    field, reason, line_number = conn.execute("SELECT field, reason, line_number FROM quarantine").fetchone()
    assert field == "quantity" and line_number == 1
    assert reason == f"conflicts with fact at position {position} (differs in: quantity)"
    stored = conn.execute("SELECT quantity FROM usage_facts").fetchone()[0]
    assert stored == 5  # the first fact stands


def test_a_conflict_inside_one_file_names_the_first_facts_position(ledger, conn, tmp_path):
    path = write_lines(tmp_path / "a.ndjson", [line(usage(1)), line(usage(1, meter="fraud_checks"))])
    ledger("ingest", "usage", str(path), check_exit=3)
    position = conn.execute("SELECT position FROM usage_facts").fetchone()[0]
    reason = conn.execute("SELECT reason FROM quarantine").fetchone()[0]
    assert reason == f"conflicts with fact at position {position} (differs in: meter)"


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_events SET topic = 'x'",
    "DELETE FROM ledger_events",
    "TRUNCATE ledger_events",
    "UPDATE usage_facts SET quantity = 0",
    "DELETE FROM usage_facts",
    "TRUNCATE usage_facts",
    "TRUNCATE usage_facts CASCADE",
    "DELETE FROM quarantine",
    "TRUNCATE quarantine",
])
def test_facts_cannot_be_rewritten_by_any_role(ledger, conn, tmp_path, statement):
    ledger("ingest", "usage", str(write_lines(tmp_path / "a.ndjson", [line(usage(1)), '{"bad": 1}'])), check_exit=3)
    # the test connects as the superuser that owns the tables: triggers refuse even the owner
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="facts are immutable"):
        conn.execute(statement)
    assert count(conn, "ledger_events") == 1


@pytest.mark.parametrize("table", ["link_fact_rows", "attribute_fact_rows", "invoice_fact_rows", "invoice_line_rows"])
def test_typed_fact_rows_cannot_be_rewritten_either(replay, conn, table):
    replay.ingest("identities", [{"source": "billing", "source_customer_id": "bi_1", "customer_id": "cus_1",
                                  "effective_from": "2026-01-01T00:00:00Z"}])
    replay.ingest("attributes", [{"customer_id": "cus_1", "effective_from": "2026-01-01T00:00:00Z", "plan": "pro"}])
    replay.ingest("invoices", [{"invoice_id": "inv_1", "source": "billing", "source_customer_id": "bi_1",
                                "period": "2026-01", "issued_at": "2026-02-01T00:00:00Z", "currency": "USD",
                                "total_cents": 500, "lines": [{"line_id": "l1", "kind": "subscription",
                                                               "amount_cents": 500}]}])
    assert count(conn, table) == 1
    for statement in (f"UPDATE {table} SET position = 0", f"DELETE FROM {table}", f"TRUNCATE {table}"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="facts are immutable"):
            conn.execute(statement)
        conn.rollback()
    assert count(conn, table) == 1


def test_stored_rows_read_back_as_eventsourcing_events(ledger, conn, tmp_path):
    path = write_lines(tmp_path / "a.ndjson", [line(usage(1, quantity=9)), line(usage(2, quantity=4))])
    ledger("ingest", "usage", str(path), check_exit=0)
    assert conn.execute("SELECT position, quantity, line FROM usage_facts ORDER BY 1").fetchall() == [(1, 9, 1), (2, 4, 2)]
    originator_id, version, topic, state, position = conn.execute(
        "SELECT originator_id, originator_version, topic, state, notification_id FROM ledger_events").fetchone()
    event = to_event(originator_id, version, topic, state)
    assert type(event).__name__ == "UsageBatchRecorded" and position == 3  # after its facts
    assert (event.first_position, event.last_position, event.count) == (1, 2, 2)
    assert (event.first_line, event.last_line, event.recorded_from) == (1, 2, str(path))
    assert event.originator_id == USAGE_BATCH.fact_id({"first_position": 1})
    assert event.timestamp.tzinfo is not None  # when it was recorded
    from ledger.store.usage import stored_rows_digest
    assert stored_rows_digest(conn, 1, 2) == event.rows_sha256
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
    info = psycopg.conninfo.conninfo_to_dict(conn.info.dsn)
    datastore = PostgresDatastore(dbname=info["dbname"], host=info.get("host", ""), port=info.get("port", "5432"),
                                  user=info.get("user", "postgres"), password="")
    recorder = PostgresApplicationRecorder(datastore, events_table_name="ledger_events")
    notifications = recorder.select_notifications(start=1, limit=10)
    assert [(n.id, n.topic) for n in notifications] == [(3, "ledger.UsageBatchRecorded")]
    datastore.close()


def test_positions_follow_commit_order_under_concurrent_appends(db, tmp_path):
    """Writers racing: every committed position is visible in order, and no reader sees a gap filled later."""
    from ledger.commands.ingest import ingest_file

    files = []
    for w in range(4):
        files.append(write_lines(tmp_path / f"w{w}.ndjson",
                                 [line(usage(i, source=f"s{w}")) for i in range(300)]))
    seen: list[int] = []
    stop = threading.Event()

    def tail():
        """A reader that follows usage facts by position, as a projector does: it must never skip one."""
        with db.connection() as c:
            last = 0
            while True:
                done = stop.is_set()
                rows = [r[0] for r in c.execute(
                    "SELECT position FROM usage_facts WHERE position > %s ORDER BY 1", (last,))]
                seen.extend(rows)
                last = rows[-1] if rows else last
                if done:
                    return

    watcher = threading.Thread(target=tail)
    watcher.start()
    threads = [threading.Thread(target=ingest_file, args=(db, "usage", str(f)), kwargs={"batch_size": 50})
               for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    with db.connection() as c:
        rows = [r[0] for r in c.execute("SELECT position FROM usage_facts ORDER BY 1")]
        batches = [r[0] for r in c.execute("SELECT notification_id FROM ledger_events ORDER BY 1")]
        commit_order = c.execute(
            "SELECT position FROM usage_facts ORDER BY xmin::text::bigint, position").fetchall()
    assert len(rows) == 1200 and len(batches) == 24
    assert sorted(rows + batches) == list(range(1, 1225))  # one dense order over facts and their batches
    assert seen == rows  # the tailing reader saw every position, in order, none skipped
    # transactions committed in position order: ordering by transaction id gives the same sequence
    assert [r[0] for r in commit_order] == rows
