"""Commands, ingest, errors, limits, the access log and the follower, through a real server process."""

from __future__ import annotations

import gzip
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.builders import invoice, line, link, usage


def ndjson(records) -> bytes:
    return "".join(line(r) + "\n" for r in records).encode()


@pytest.fixture(scope="module")
def customers(service):
    """cus_1 with a billing id and a 1,000-cent January invoice; some January usage."""
    with service.client("ingest") as client:
        for kind, records in (("identities", [link(), link(source="billing", scid="bc_1")]),
                              ("invoices", [invoice()]),
                              ("usage", [usage(n) for n in range(1, 51)])):
            response = client.post(f"/v1/facts/{kind}", content=ndjson(records))
            assert response.status_code == 200 and response.json()["quarantined"] == 0, response.text
    return "cus_1"


def credit(client, key: str, amount: int = 10, **extra):
    body = {"customer_id": "cus_1", "amount_cents": amount, "reason": "goodwill", "invoice_id": "in_1", **extra}
    return client.post("/v1/credits", json=body, headers={"Idempotency-Key": key})


def test_idempotent_credit_under_20_concurrent_requests(service, customers):
    def post(_):
        with service.client("finance") as client:
            return credit(client, "idem-20", 25)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201], [
        (r.status_code, r.text) for r in responses if r.status_code != 200]
    bodies = {json.dumps({k: v for k, v in r.json().items() if k != "created"}, sort_keys=True) for r in responses}
    assert len(bodies) == 1  # every answer is the first credit
    assert all(r.headers.get("Idempotent-Replayed") == "true" for r in responses if r.status_code == 200)
    first = responses[[r.status_code for r in responses].index(201)].json()
    assert first["actor"] == "finance@example.com" and first["amount_cents"] == 25
    with psycopg.connect(service.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM credit_facts WHERE credit_id = 'idem-20'").fetchone()[0] == 1
    with service.client("finance") as client:
        other = credit(client, "idem-20", 26)
    assert other.status_code == 409 and other.json()["rule"] == "idempotency_key_reused"
    assert "differs in: amount_cents" in other.json()["detail"]


def test_concurrent_credits_never_exceed_the_invoice(service, customers):
    def post(i):
        with service.client("finance") as client:
            return credit(client, f"race-{i}", 100)

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(post, range(12)))
    with psycopg.connect(service.db_url) as conn:
        total = conn.execute("SELECT sum(amount_cents) FROM credit_facts WHERE invoice_id = 'in_1'").fetchone()[0]
    assert total <= 1000
    refused = [r for r in responses if r.status_code == 422]
    assert refused and all(r.json()["rule"] == "credit_exceeds_invoice" for r in refused)


def test_refusals_name_the_field_and_rule(service, customers):
    before = service.head()
    with service.client("finance") as client:
        actor = credit(client, "k-actor", actor="someone else")
        assert actor.status_code == 422 and actor.json()["errors"][0]["field"] == "body.actor"
        money = credit(client, "k-money", amount="12.5")
        assert money.status_code == 422 and "body.amount_cents" in money.json()["detail"]
        no_key = client.post("/v1/credits", json={"customer_id": "cus_1", "amount_cents": 1, "reason": "goodwill"})
        assert no_key.status_code == 422 and "header.Idempotency-Key" in no_key.json()["detail"]
        unknown = client.post("/v1/credits", json={"customer_id": "cus_9", "amount_cents": 1, "reason": "goodwill"},
                              headers={"Idempotency-Key": "k-unknown"})
        assert unknown.status_code == 422
        assert unknown.json()["detail"] == "refused (unknown_customer): customer 'cus_9' has no identity link or attributes"
        running = client.post("/v1/periods/2099-01/close")
        assert running.status_code == 422 and running.json()["rule"] == "month_not_ended"
        invalid = client.post("/v1/periods/2026-13/close")
        assert invalid.status_code == 422 and invalid.json()["rule"] == "invalid_month"
    assert service.head() == before


def test_ingest_streams_gzip_chunked_bodies_and_lists_quarantined_lines(service, customers):
    records = [usage(n, event_time="2026-01-20T10:00:00.123+02:00") for n in range(1000, 6000)]
    records[10]["quantity"] = "many"
    body = gzip.compress(ndjson(records))

    def chunks():
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]

    with service.client("ingest") as client:
        response = client.post("/v1/facts/usage", content=chunks(), params={"source": "batch-a.ndjson.gz"},
                               headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["read"], report["appended"], report["quarantined"], report["exit_code"]) == (5000, 4999, 1, 3)
    assert report["file"] == "api:ingest@example.com:batch-a.ndjson.gz"
    [bad] = report["quarantined_records"]
    assert bad["line_number"] == 11 and bad["field"] == "quantity"
    rows = service.access_rows(response.headers["request-id"])
    assert rows[0][6] == 4999  # facts appended, in the access log


def test_bodies_over_the_limit_are_refused(service):
    with service.client("finance") as client:
        big = client.post("/v1/credits", content=b"x" * 70_000, headers={"Idempotency-Key": "big",
                                                                          "Content-Type": "application/json"})
    assert big.status_code == 413 and big.json()["rule"] == "body_too_large"
    rows = service.access_rows(big.headers["request-id"])
    assert rows[0][4] == 413 and rows[0][0] is None  # refused before the token was even read


def test_unsupported_formats_are_refused(service):
    with service.client("ingest") as client:
        response = client.post("/v1/facts/prices", content=b"a,b\n", headers={"Content-Type": "text/csv"})
        assert response.status_code == 415 and "prices cannot be read as csv" in response.json()["detail"]
        response = client.post("/v1/facts/usage", content=b"", headers={"Content-Type": "image/png"})
        assert response.status_code == 415


def test_the_access_log_is_immutable_and_listed(service, customers):
    with psycopg.connect(service.db_url, autocommit=True) as conn:
        for statement in ("UPDATE api_access_log SET status = 200", "DELETE FROM api_access_log",
                          "TRUNCATE api_access_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    with service.client("finance") as client:
        assert credit(client, "access-listed", 1).status_code in (200, 201, 422)  # 422: the invoice is spent
    with service.client("auditor") as client:
        rows = client.get("/v1/access", params={"principal": "finance@example.com"}).json()
        assert rows and {r["principal"] for r in rows} == {"finance@example.com"}
        assert any(r["path"] == "/v1/credits" and r["params"].get("Idempotency-Key") == "access-listed"
                   for r in rows)
        page = client.get("/v1/access", params={"after": rows[0]["access_id"], "limit": 1}).json()
        assert len(page) == 1 and page[0]["access_id"] > rows[0]["access_id"]


def test_tokens_through_the_api(service):
    with service.client("admin") as client:
        made = client.post("/v1/tokens", json={"name": "robot", "role": "auditor"})
        assert made.status_code == 201 and made.json()["token"].startswith("lgr_")
        token, token_id = made.json()["token"], made.json()["token_id"]
        assert token not in client.get("/v1/tokens").text
        with service.client(None, headers={"Authorization": f"Bearer {token}"}) as robot:
            assert robot.get("/v1/quarantine").status_code == 200
            assert client.post(f"/v1/tokens/{token_id}/revoke").json()["revoked_by"] == "admin@example.com"
            assert robot.get("/v1/quarantine").status_code == 401
        bad = client.post("/v1/tokens", json={"name": "x", "role": "root"})
        assert bad.status_code == 422 and "role 'root' is not one of" in bad.json()["detail"]


def test_the_follower_keeps_the_read_models_current(service, customers):
    with service.client("ingest") as client:
        response = client.post("/v1/facts/usage", content=ndjson([usage(n, quantity=3) for n in range(9000, 9100)]))
    last = response.json()["last_position"]
    deadline = time.monotonic() + 60
    with service.client("auditor") as client:
        while True:
            state = client.get("/v1/projections/checkpoints").json()
            if state["finance"]["checkpoint"] > last and state["risk"]["checkpoint"] > last:
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state["follower_running"] and state["follower_runs"] > 0
        # a read that does not bring the projections up to date itself sees the follower's work
        rows = client.get("/v1/exports/customer-month-meter", params={"format": "json", "fresh": "false",
                                                                       "customer": "cus_1", "month": "2026-01"}).json()
        assert rows[0]["on_time_units"] >= 300
        metrics = client.get("/metrics").text
    assert 'ledger_projector_lag_facts{views="finance"}' in metrics
    assert 'ledger_facts_appended_total{kind="usage"}' in metrics


def test_calculations_define_diff_promote_list(service, customers):
    with service.client("finance") as client:
        made = client.put("/v1/calculations/prorated", json={"plan_rule": "daily_prorated", "note": "test"})
        assert made.status_code == 201 and made.json()["appended"] == 1, made.text
        again = client.put("/v1/calculations/prorated", json={"plan_rule": "daily_prorated"})
        assert again.status_code == 200 and again.json()["appended"] == 0
        other = client.put("/v1/calculations/prorated", json={"plan_rule": "month_start"})
        assert other.status_code in (409, 422) and other.json()["detail"].startswith("refused (")
        changes = client.get("/v1/calculations/prorated/diff")
        assert changes.status_code == 200 and "summary" in changes.json()
        promoted = client.post("/v1/calculations/prorated/promote", json={"reason": "proration"})
        assert promoted.status_code == 201, promoted.text
        listing = client.get("/v1/calculations").json()
        assert listing["in_force"] == "prorated"
        assert listing["promotions"][-1]["actor"] == "finance@example.com"
        assert client.get("/v1/exports/restatements").status_code == 200
        missing = client.post("/v1/calculations/nope/promote", json={"reason": "x"})
        assert missing.status_code in (404, 422)


def test_a_burst_wider_than_the_pool_is_answered(service, customers):
    """More concurrent requests than the service's pool has connections (credits, exports, traces at once): each
    request's token lookup and access-log row use connections of their own, so none waits on another. The credits
    name no invoice: the module's other tests may have spent `in_1` on this service already."""
    def post(i):
        with service.client("finance") as client:
            if i % 3 == 0:
                return client.get("/v1/exports/customer-month", params={"format": "json"})
            if i % 3 == 1:
                return client.get("/v1/projections/checkpoints")
            return credit(client, f"burst-{i}", 1, invoice_id=None)

    with ThreadPoolExecutor(48) as pool:
        responses = list(pool.map(post, range(48)))
    assert [r.status_code for r in responses if r.status_code not in (200, 201)] == [], [
        r.text for r in responses if r.status_code >= 400][:3]
