"""Tamper evidence against a superuser: each covered column, the quarantine chain, the derived usage months and
every rule of a signed anchor is found by `verify`, with the position named."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.audit.anchors import SignedAnchor, public_hex, sign
from ledger.audit.verify import verify_store
from ledger.store.appender import chain_hash
from tests.builders import line, usage
from tests.conftest import clone_database, drop_databases, ledger_runner, with_dbname, write_lines
from tests.tampering import rechain, tamper


@pytest.fixture(scope="module")
def store_template(pg_admin, template_db, tmp_path_factory) -> str:
    """Usage facts and their batch, an invoice with a credit on its stream, and two quarantined records: written once
    through the `ledger` command, then copied for each test that tampers with it."""
    name = clone_database(pg_admin, template_db)
    tmp_path = tmp_path_factory.mktemp("anchored")
    ledger = ledger_runner(with_dbname(pg_admin, name), tmp_path)
    ledger("ingest", "usage", str(write_lines(tmp_path / "u.ndjson", [line(usage(i, quantity=i)) for i in range(1, 4)]
                                              + ["{not json", line(usage(9, quantity=-1))])), check_exit=3)
    write_lines(tmp_path / "l.ndjson", [json.dumps({"source": "billing", "source_customer_id": "bc_1",
                                                    "customer_id": "cus_1", "effective_from": "2025-12-01T00:00:00Z"})])
    ledger("ingest", "identities", str(tmp_path / "l.ndjson"), check_exit=0)
    write_lines(tmp_path / "i.ndjson", [json.dumps({
        "invoice_id": "in_1", "source": "billing", "source_customer_id": "bc_1", "period": "2026-01",
        "issued_at": "2026-02-03T00:00:00Z", "currency": "USD", "total_cents": 1000,
        "lines": [{"line_id": "L1", "kind": "subscription", "amount_cents": 1000}]})])
    ledger("ingest", "invoices", str(tmp_path / "i.ndjson"), check_exit=0)
    ledger("credit", "issue", "--customer", "cus_1", "--amount-cents", "100", "--reason", "goodwill", "--actor",
           "fin@example.com", "--idempotency-key", "cr_1", "--invoice", "in_1", check_exit=0)
    yield name
    drop_databases(pg_admin, [name])


@pytest.fixture
def db_url(request, pg_admin, template_db) -> str:
    """A copy of the module's store for a test that asks for `store`; a fresh, migrated database otherwise."""
    template = request.getfixturevalue("store_template") if "store" in request.fixturenames else template_db
    name = clone_database(pg_admin, template)
    yield with_dbname(pg_admin, name)
    drop_databases(pg_admin, [name])


@pytest.fixture
def store(ledger, conn):
    return ledger


def position_of(conn, topic: str) -> int:
    return conn.execute("SELECT max(notification_id) FROM ledger_events WHERE topic = %s", (topic,)).fetchone()[0]


def first(conn, **kwargs):
    report = verify_store(conn, projections=False, **kwargs)
    assert not report.ok
    return report


def test_a_clean_store_with_every_kind_of_row_verifies(store, conn):
    report = verify_store(conn, projections=False)
    assert report.ok, report.as_dict()
    assert report.quarantine_records == 2


@pytest.mark.parametrize("column, value", [
    ("originator_version", "originator_version + 1"),  # the credit's version on its invoice's stream
    ("originator_id", "gen_random_uuid()"),
    ("topic", "'ledger.Forged'"),
    ("state", "convert_to(replace(convert_from(state, 'UTF8'), '100', '900'), 'UTF8')"),
    ("notification_id", "notification_id + 1000"),
])
def test_each_events_column_is_under_the_chain(store, conn, column, value):
    credit = position_of(conn, "ledger.CreditIssued")
    tamper(conn, f"UPDATE ledger_events SET {column} = {value} WHERE notification_id = %s", credit)
    mismatch = first(conn).chain.mismatch
    assert mismatch is not None and mismatch.position == (credit + 1000 if column == "notification_id" else credit)


@pytest.mark.parametrize("column, value", [
    ("kind", "'prices'"), ("source_file", "'/elsewhere'"), ("line_number", "line_number + 1"),
    ("raw_text", "'{}'"), ("raw_bytes", "'\\x00'::bytea"), ("field", "'meter'"), ("reason", "'ok'"),
    ("record_digest", "sha256('x')"), ("quarantined_at", "quarantined_at - interval '1 day'"),
    ("quarantine_id", "quarantine_id + 100"),
])
def test_each_quarantine_column_is_under_its_chain(store, conn, column, value):
    target = conn.execute("SELECT min(quarantine_id) FROM quarantine").fetchone()[0]
    tamper(conn, f"UPDATE quarantine SET {column} = {value} WHERE quarantine_id = %s", target)
    report = first(conn)
    assert report.quarantine is not None and "quarantine record" in report.quarantine.reason


def test_a_deleted_quarantine_record_is_found(store, conn):
    tamper(conn, "DELETE FROM quarantine WHERE quarantine_id = (SELECT min(quarantine_id) FROM quarantine)")
    assert first(conn).quarantine is not None


def test_usage_months_are_recomputed_from_the_facts(store, conn):
    tamper(conn, "DELETE FROM usage_months WHERE month = '2026-01'")
    report = first(conn)
    assert report.derived.position == 1 and "lacks month 2026-01" in report.derived.reason
    tamper(conn, "INSERT INTO usage_months VALUES ('2026-01'), ('2025-07')")
    assert "holds month 2025-07" in first(conn).derived.reason


# -- signed anchors -----------------------------------------------------------------------------------------
@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def check(conn, anchors, key):
    return verify_store(conn, projections=False, signed=anchors, trusted_key=public_hex(key.public_key()))


def test_a_signed_anchor_of_a_clean_store_verifies(store, conn, key):
    report = check(conn, [sign(conn, key)], key)
    assert report.ok and report.anchors_checked == 1


def test_rule_signature_an_altered_anchor_is_refused(store, conn, key):
    anchor = sign(conn, key)
    altered = SignedAnchor(**{**anchor.__dict__, "position": anchor.position - 1})
    report = check(conn, [altered], key)
    assert "signature does not verify" in report.anchors[0].reason


def test_rule_trusted_key_an_anchor_signed_by_another_key_is_refused(store, conn, key):
    report = check(conn, [sign(conn, Ed25519PrivateKey.generate())], key)
    assert "not the trusted anchor key" in report.anchors[0].reason


def test_rule_chain_a_rewrite_recomputing_every_link_is_caught(store, conn, key):
    anchor = sign(conn, key)
    credit = position_of(conn, "ledger.CreditIssued")
    tamper(conn, "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'), '100', '900'),"
                 " 'UTF8') WHERE notification_id = %s", credit)
    rechain(conn)
    assert verify_store(conn, projections=False).chain.mismatch is None  # consistent with itself
    report = check(conn, [anchor], key)
    assert report.anchors[0].position == anchor.position and "was rewritten" in report.anchors[0].reason


def test_rule_chain_a_removed_tail_is_caught(store, conn, key):
    anchor = sign(conn, key)
    tamper(conn, "DELETE FROM ledger_events WHERE notification_id = %s", anchor.position)
    report = check(conn, [anchor], key)
    assert any("removed from its end" in m.reason for m in report.anchors)


def test_rule_quarantine_a_rechained_quarantine_is_caught(store, conn, key):
    anchor = sign(conn, key)
    tamper(conn, "DELETE FROM quarantine WHERE quarantine_id = (SELECT min(quarantine_id) FROM quarantine)")
    tamper(conn, "UPDATE quarantine q SET chain_hash = ledger_quarantine_link("
                 "'\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, q)")
    report = check(conn, [anchor], key)
    assert report.quarantine is not None and "anchored" in report.quarantine.reason


def test_rule_recorded_after_a_back_dated_fact_forged_after_the_newest_anchor_is_caught(store, conn, key):
    anchor = sign(conn, key)
    # a forged credit appended after the anchor with a correctly extended chain, dated a day before it
    state = json.dumps({"credit_id": "cr_forged", "customer_id": "cus_1", "amount_cents": 99999, "reason": "goodwill",
                        "memo": None, "actor": "x", "invoice_id": None, "issued_at": "2026-02-10T00:00:00.000000+00:00",
                        "timestamp": {"_type_": "datetime_iso",
                                      "_data_": (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()}}).encode()
    head_position, head = conn.execute("SELECT notification_id, chain_hash FROM ledger_events ORDER BY 1 DESC"
                                       " LIMIT 1").fetchone()
    import uuid
    stream, position = uuid.uuid4(), head_position + 1
    link = chain_hash(bytes(head), position, "ledger.CreditIssued", state, stream.bytes, 1)
    conn.execute("INSERT INTO ledger_events (originator_id, originator_version, topic, state, notification_id,"
                 " chain_hash) VALUES (%s, 1, 'ledger.CreditIssued', %s, %s, %s)", (stream, state, position, link))
    assert verify_store(conn, projections=False).ok  # the chain alone cannot tell
    report = check(conn, [anchor], key)
    assert report.anchors[0].position == position and "behind the ledger's back" in report.anchors[0].reason


def test_ledger_anchor_and_verify_anchors_end_to_end(store, conn, tmp_path):
    anchors = tmp_path / "anchors.jsonl"
    store("anchor", "--out", str(anchors), check_exit=0)
    printed = store("anchor", check_exit=0).stdout.strip()
    anchors.write_text(anchors.read_text() + printed + "\n")
    assert (tmp_path / "home" / "anchor-key.pem").stat().st_mode & 0o777 == 0o600
    result = store("verify", "--skip-projections", "--anchors", str(anchors), check_exit=0)
    assert "anchors: ok (2 anchors checked)" in result.stdout
    credit = position_of(conn, "ledger.CreditIssued")
    tamper(conn, "UPDATE ledger_events SET originator_version = 7 WHERE notification_id = %s", credit)
    rechain(conn)
    result = store("verify", "--skip-projections", "--anchors", str(anchors), check_exit=1)
    assert "the chain up to here was rewritten" in result.stdout
