"""`ledger verify`: a clean store verifies; a superuser's edit behind the triggers' back is found, by position."""

from __future__ import annotations

import json

import pytest

from ledger.audit.verify import Anchor, verify_store
from tests.builders import usage
from tests.tampering import rechain, tamper


@pytest.fixture
def store(ledger, replay):
    """Five usage facts (positions 1–5), their batch event (6) and one identity link (7), ingested in process;
    `ledger` to run commands on them."""
    replay.ingest("usage", [usage(i, quantity=i) for i in range(1, 6)], "u.ndjson")
    replay.ingest("identities", [{"source": "product", "source_customer_id": "pr_1", "customer_id": "cus_1",
                                  "effective_from": "2025-12-01T00:00:00Z"}])
    return ledger


def edit_state(old: str, new: str) -> str:
    """An UPDATE replacing SQL literal `old` by `new` in one fact's JSON state."""
    return (f"UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'), {old}, {new}), 'UTF8')"
            " WHERE notification_id = %s")


def positions(conn) -> list[int]:
    return [p for (p,) in conn.execute("SELECT notification_id FROM ledger_events ORDER BY 1")]


def test_a_clean_store_verifies(store):
    result = store("verify", "--skip-projections", check_exit=0)
    assert "chain: ok" in result.stdout and "usage batches: ok (5 usage facts in 1 batch)" in result.stdout
    report = json.loads(store("verify", "--skip-projections", "--json", check_exit=0).stdout)
    assert report["ok"] is True and report["facts"] == 6 and report["head"]["position"] == 7
    assert report["chain"] == "ok" and report["usage_batches"] == "ok" and report["projections"] == "skipped"


def test_an_empty_store_verifies(ledger):
    report = json.loads(ledger("verify", "--skip-projections", "--json", check_exit=0).stdout)
    assert report["facts"] == 0 and report["head"]["position"] is None and report["ok"] is True


def test_a_clean_store_verifies_with_its_projections(store):
    report = json.loads(store("verify", "--json", check_exit=0).stdout)
    assert report["ok"] is True and report["projections"]
    assert all(table["equal"] for table in report["projections"].values())


def test_an_edited_projection_row_is_found(store, conn):
    store("project", check_exit=0)
    edited = conn.execute("UPDATE ledger_proj.customer_month_meter SET on_time_units = on_time_units + 1").rowcount
    assert edited == 1  # cus_1 × 2026-01 × api_calls: read models are not facts, nothing protects them
    result = store("verify", check_exit=1)
    assert "chain: ok" in result.stdout and "usage batches: ok" in result.stdout
    assert "projections: customer_month_meter differs" in result.stdout


def test_an_edited_state_is_found_at_its_position(store, conn):
    target = positions(conn)[1]  # the identity link
    tamper(conn, edit_state("'pr_1'", "'pr_9'"), target)
    result = store("verify", "--skip-projections", check_exit=1)
    assert f"chain: first mismatch at position {target}:" in result.stdout
    assert f"first mismatch at position {target}: " in result.stdout.splitlines()[-1]
    assert "usage batches: ok" in result.stdout


def test_an_edited_batch_event_is_found_by_the_chain(store, conn):
    batch = positions(conn)[0]
    tamper(conn, edit_state("'\"count\":5'", "'\"count\":4'"), batch)
    result = store("verify", "--skip-projections", check_exit=1)
    assert f"chain: first mismatch at position {batch}:" in result.stdout
    assert "usage batches: first mismatch at position 1: the batch recorded at position 6" in result.stdout


@pytest.mark.parametrize("column, value", [("topic", "ledger.PriceSet"), ("notification_id", 1000)])
def test_an_edited_topic_or_position_breaks_the_chain(store, conn, column, value):
    target = positions(conn)[-1]  # the identity link
    tamper(conn, f"UPDATE ledger_events SET {column} = %s WHERE notification_id = %s", value, target)
    report = json.loads(store("verify", "--skip-projections", "--json", check_exit=1).stdout)
    assert report["chain"]["position"] == (value if column == "notification_id" else target)
    assert report["ok"] is False


def test_a_deleted_batch_event_breaks_the_chain_and_leaves_its_rows_unrecorded(store, conn):
    batch, link = positions(conn)
    tamper(conn, "DELETE FROM ledger_events WHERE notification_id = %s", batch)
    result = store("verify", "--skip-projections", check_exit=1)
    assert f"chain: first mismatch at position {link}:" in result.stdout
    assert "(it is the first event of the chain)" in result.stdout
    assert "usage batches: first mismatch at position 1: the usage_facts row at position 1 belongs to no recorded " \
           "batch" in result.stdout


def test_an_inserted_fact_breaks_the_chain(store, conn):
    last = positions(conn)[-1]
    tamper(conn, "INSERT INTO ledger_events (originator_id, originator_version, topic, state, notification_id,"
                 " chain_hash) SELECT gen_random_uuid(), 1, topic, state, %s, chain_hash FROM ledger_events"
                 " WHERE notification_id = %s", last + 1, last)
    report = json.loads(store("verify", "--skip-projections", "--json", check_exit=1).stdout)
    assert report["chain"]["position"] == last + 1 and report["chain"]["broken_links"] == 1


def test_a_tampered_usage_quantity_is_found(store, conn, tmp_path):
    tamper(conn, "UPDATE usage_facts SET quantity = quantity + 100 WHERE position = 2")
    result = store("verify", "--skip-projections", check_exit=1)
    assert "chain: ok" in result.stdout
    ingested = tmp_path / "replay" / "u.ndjson"
    reason = (f"the usage rows of the batch recorded at position 6 (positions 1–5, {ingested} from line 1) no longer "
              "hash to its rows_sha256: a row was edited")
    assert f"usage batches: first mismatch at position 1: {reason}" in result.stdout
    report = json.loads(store("verify", "--skip-projections", "--json", check_exit=1).stdout)
    assert report["usage_batches"] == {"position": 1, "batch": 6, "reason": reason}
    assert report["first_mismatch"]["position"] == 1


@pytest.mark.parametrize("statement, reason", [
    ("UPDATE usage_facts SET event_time = event_time + interval '1 microsecond' WHERE position = 4", "a row was edited"),
    ("UPDATE usage_facts SET source_customer_id = 'pr_2' WHERE position = 4", "a row was edited"),
    ("UPDATE usage_facts SET line = 9 WHERE position = 4", "a row was edited"),
    ("UPDATE usage_facts SET properties = '{}' WHERE position = 4", "a row was edited"),
    ("DELETE FROM usage_facts WHERE position = 4", "5 usage facts, 4 are stored: position 4 is missing"),
    # positions are drawn once from the sequence, not held unique by an index: a second row at one is found
    ("INSERT INTO usage_facts (position, event_id, source, source_customer_id, meter, quantity, event_time, line)"
     " SELECT position, event_id || 'x', source, source_customer_id, meter, quantity, event_time, line"
     " FROM usage_facts WHERE position = 4", "5 usage facts, 6 are stored"),
])
def test_every_usage_column_and_row_is_checked(store, conn, statement, reason):
    tamper(conn, statement)
    result = store("verify", "--skip-projections", check_exit=1)
    assert "usage batches: first mismatch at position " in result.stdout and reason in result.stdout


def test_a_usage_row_outside_every_batch_is_found(store, conn):
    tamper(conn, "INSERT INTO usage_facts (position, event_id, source, source_customer_id, meter, quantity, event_time,"
                 " line) SELECT position + 100, event_id || 'x', source, source_customer_id, meter, quantity,"
                 " event_time, line FROM usage_facts WHERE position = 1")
    result = store("verify", "--skip-projections", check_exit=1)
    assert "the usage_facts row at position 101 belongs to no recorded batch" in result.stdout


def test_a_rewrite_that_recomputes_the_whole_chain_is_caught_only_by_an_anchor(store, conn):
    """A superuser can recompute every link after an edit; a head kept elsewhere still tells."""
    head = json.loads(store("verify", "--skip-projections", "--json", check_exit=0).stdout)["head"]
    target = positions(conn)[1]
    tamper(conn, edit_state("'pr_1'", "'pr_9'"), target)
    tamper(conn, "UPDATE link_fact_rows SET source_customer_id = 'pr_9' WHERE position = %s", target)
    rechain(conn)
    store("verify", "--skip-projections", check_exit=0)  # consistent with itself
    result = store("verify", "--skip-projections", "--anchor", f"{head['position']}:{head['chain_hash']}",
                   check_exit=1)
    assert f"first mismatch at position {head['position']}: anchor: the link recomputed at position " \
           f"{head['position']} differs from the anchored one" in result.stdout


def test_a_typed_row_that_differs_from_its_fact_is_found(store, conn):
    """The projections read the links' typed rows: an edit of one, or of the JSON alone, is named by its position."""
    link = positions(conn)[1]
    tamper(conn, "UPDATE link_fact_rows SET customer_id = 'cus_9' WHERE position = %s", link)
    result = store("verify", "--skip-projections", check_exit=1)
    assert "chain: ok" in result.stdout
    assert (f"derived tables: link_fact_rows differs at position {link} from that fact as recorded"
            in result.stdout)
    tamper(conn, "UPDATE link_fact_rows SET customer_id = 'cus_1' WHERE position = %s", link)
    store("verify", "--skip-projections", check_exit=0)
    tamper(conn, "DELETE FROM link_fact_rows WHERE position = %s", link)
    report = json.loads(store("verify", "--skip-projections", "--json", check_exit=1).stdout)
    assert report["first_mismatch"] == {"check": "derived_tables", "position": link, "table": "link_fact_rows",
                                        "reason": f"link_fact_rows differs at position {link} from that fact as "
                                                  "recorded (its JSON in ledger_events, which the chain covers)"}


def test_an_invoice_line_that_differs_from_its_fact_is_found(ledger, replay, conn):
    replay.ingest("invoices", [{"invoice_id": "inv_1", "source": "billing", "source_customer_id": "bi_1",
                                "period": "2026-01", "issued_at": "2026-02-01T00:00:00Z", "currency": "USD",
                                "total_cents": 700, "lines": [
                                    {"line_id": "l1", "kind": "subscription", "amount_cents": 500},
                                    {"line_id": "l2", "kind": "usage", "meter": "api_calls", "quantity": 4,
                                     "amount_cents": 200}]}])
    assert conn.execute("SELECT line_no, kind, meter, quantity, amount_cents FROM invoice_line_facts"
                        " ORDER BY line_no").fetchall() == [(1, "subscription", None, None, 500),
                                                            (2, "usage", "api_calls", 4, 200)]
    ledger("verify", "--skip-projections", check_exit=0)
    tamper(conn, "UPDATE invoice_line_rows SET quantity = 5 WHERE line_no = 2")
    result = ledger("verify", "--skip-projections", check_exit=1)
    assert "derived tables: invoice_line_rows differs at position 1 from that fact as recorded" in result.stdout


def test_an_anchor_past_the_end_finds_a_truncated_tail(store, conn):
    head = json.loads(store("verify", "--skip-projections", "--json", check_exit=0).stdout)["head"]
    tamper(conn, "DELETE FROM ledger_events WHERE notification_id = %s", head["position"])
    result = store("verify", "--skip-projections", "--anchor", f"{head['position']}:{head['chain_hash']}",
                   check_exit=1)
    assert "facts were removed from its end" in result.stdout
    store("verify", "--skip-projections", "--anchor", "nonsense", check_exit=2)


def test_verify_reads_in_batches_with_the_same_result(store, conn):
    """Small batches cross fetch boundaries: the chain carries over and the same first mismatch is found."""
    target = positions(conn)[0]
    tamper(conn, edit_state("'\"first_line\":1'", "'\"first_line\":2'"), target)
    for batch_size in (1, 2, 5, 1000):
        report = verify_store(conn, projections=False, batch_size=batch_size)
        assert report.chain.mismatch.position == target and report.chain.events == 2 and report.chain.breaks == 1
        assert report.usage.mismatch is None and report.facts == 6


def test_an_anchor_is_position_and_sha256():
    anchor = Anchor.parse("12:" + "ab" * 32)
    assert anchor.position == 12 and anchor.chain_hash == bytes.fromhex("ab" * 32)
    with pytest.raises(ValueError):
        Anchor.parse("12:abcd")


@pytest.fixture
def calc_store(store, replay):
    """The store above with a calculation defined and promoted, then v1 promoted back (three calculation facts)."""
    replay.define("prorated", "daily_prorated", "fin@example.com", "prorate plan changes")
    replay.promote("prorated", "fin@example.com", "approved")
    replay.promote("v1", "fin@example.com", "back")
    return store


def calc_positions(conn) -> list[int]:
    return [p for (p,) in conn.execute("SELECT notification_id FROM ledger_events WHERE topic LIKE "
                                       "'ledger.Calculation%' ORDER BY 1")]


def test_calculation_facts_are_in_the_chain_and_counted(calc_store):
    report = json.loads(calc_store("verify", "--json", check_exit=0).stdout)
    assert report["ok"] is True and report["facts"] == 9
    assert report["calculations"] == {"defined": 1, "promoted": 2, "check": "ok"}
    text = calc_store("verify", "--skip-projections", check_exit=0).stdout
    assert "calculations: ok (1 definitions, 2 promotions, in the chain and as their rules decide)" in text


@pytest.mark.parametrize("which, old, new", [
    (0, "'daily_prorated'", "'month_start'"),   # the definition's rule
    (1, "'approved'", "'approves'"),            # the promotion's reason
    (2, "'v1'", "'v2'"),                        # the promotion's name
])
def test_an_edited_calculation_fact_breaks_the_chain_at_its_position(calc_store, conn, which, old, new):
    target = calc_positions(conn)[which]
    tamper(conn, edit_state(old, new), target)
    result = calc_store("verify", "--skip-projections", check_exit=1)
    assert f"chain: first mismatch at position {target}:" in result.stdout
    assert f"FAILED: first mismatch at position {target}: " in result.stdout


@pytest.mark.parametrize("which, old, new, reason", [
    (2, "'v1'", "'v9'", "names 'v9', which no definition before it defines"),
    (1, "'daily_prorated'", "'month_start'", "gives 'prorated' the rule 'month_start'; its definition says"),
    (2, '\'"sequence":2\'', '\'"sequence":3\'', "is number 3 of its stream, where 2 comes next"),
])
def test_a_calculation_fact_hidden_behind_a_recomputed_chain_breaks_its_rules(calc_store, conn, which, old, new,
                                                                              reason):
    target = calc_positions(conn)[which]
    tamper(conn, edit_state(old, new), target)
    rechain(conn)
    result = calc_store("verify", "--skip-projections", check_exit=1)
    assert "chain: ok" in result.stdout
    assert f"FAILED: first mismatch at position {target}: the promotion at position {target} " in result.stdout
    assert reason in result.stdout
    report = json.loads(calc_store("verify", "--skip-projections", "--json", check_exit=1).stdout)
    assert report["first_mismatch"]["check"] == "calculations" and report["first_mismatch"]["position"] == target
