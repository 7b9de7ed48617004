"""Every role against every endpoint: allowed, or 401/403 with nothing appended and the access log row written.

The matrix is written out here, independently of the service's own declarations.
"""

from __future__ import annotations

import pytest

READERS = {"finance", "auditor"}
# (method, path, body or None, the roles that may)
ENDPOINTS = [
    ("POST", "/v1/facts/usage", b'{"event_id": "r1", "source": "s", "customer_id": "c", "meter": "m", '
                                b'"quantity": 1, "timestamp": "2026-01-01T00:00:00Z"}\n', {"ingest"}),
    ("POST", "/v1/facts/identities", b"", {"ingest"}),
    ("POST", "/v1/facts/attributes", b"", {"ingest"}),
    ("POST", "/v1/facts/prices", b"", {"ingest"}),
    ("POST", "/v1/facts/invoices", b"", {"ingest"}),
    ("POST", "/v1/facts/credits", b"", {"finance"}),
    ("POST", "/v1/credits", {"customer_id": "nobody", "amount_cents": 5, "reason": "goodwill"}, {"finance"}),
    ("POST", "/v1/periods/2099-01/close", None, {"finance"}),
    ("POST", "/v1/projections", None, {"finance"}),
    ("PUT", "/v1/calculations/role_matrix", {"plan_rule": "not_a_rule"}, {"finance"}),
    ("POST", "/v1/calculations/undefined/promote", {"reason": "r"}, {"finance"}),
    ("GET", "/v1/calculations", None, READERS),
    ("GET", "/v1/calculations/undefined/diff", None, READERS),
    ("GET", "/v1/exports/restatements", None, READERS),
    ("GET", "/v1/exports/customer-month", None, READERS),
    ("GET", "/v1/exports/anomalies", None, READERS),
    ("GET", "/v1/trace/invoices/inv_missing", None, READERS),
    ("GET", "/v1/trace/invoices/inv_missing/lines/L1/facts", None, READERS),
    ("GET", "/v1/trace/customers/c/months/2026-01", None, READERS),
    ("GET", "/v1/anomalies", None, READERS),
    ("GET", "/v1/quarantine", None, READERS),
    ("GET", "/v1/verify?skip_projections=true", None, READERS),
    ("GET", "/v1/projections/checkpoints", None, READERS),
    ("GET", "/v1/access", None, {"auditor", "admin"}),
    ("GET", "/v1/tokens", None, {"admin"}),
    ("POST", "/v1/tokens", {"name": "x", "role": "nope"}, {"admin"}),
    ("POST", "/v1/tokens/none/revoke", None, {"admin"}),
]
CALLERS = ["ingest", "finance", "auditor", "admin", None, "revoked", "expired", "garbage"]


def call(service, method: str, path: str, body, caller: str | None):
    headers = {"Idempotency-Key": "role-matrix"}
    if caller == "garbage":
        headers["Authorization"] = "Bearer lgr_000000000000_not-a-token"
    elif caller is not None:
        headers["Authorization"] = f"Bearer {service.tokens[caller]}"
    with service.client(None) as client:
        if isinstance(body, dict):
            return client.request(method, path, json=body, headers=headers)
        return client.request(method, path, content=body, headers=headers)


@pytest.mark.parametrize("method,path,body,allowed", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_role_matrix(service, method, path, body, allowed):
    for caller in CALLERS:
        before = service.head()
        response = call(service, method, path, body, caller)
        rows = service.access_rows(response.headers["request-id"])
        assert len(rows) == 1, (caller, rows)
        principal, role, logged_method, logged_path, status, _, _ = rows[0]
        assert (logged_method, logged_path.split("?")[0], status) == (method, path.split("?")[0], response.status_code)
        if caller in allowed:
            assert response.status_code not in (401, 403), (caller, response.text)
            assert (principal, role) == (f"{caller}@example.com", caller)
            continue
        expected = 403 if caller in ("ingest", "finance", "auditor", "admin") else 401
        assert response.status_code == expected, (caller, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == expected and problem["instance"] == path.split("?")[0]
        assert service.head() == before, caller  # nothing appended
        if expected == 401:
            assert principal is None and response.headers["www-authenticate"].startswith("Bearer")
            reason = {"revoked": "was revoked", "expired": "expired at", "garbage": "unknown token",
                      None: "no bearer token"}[caller]
            assert reason in problem["detail"], problem
        else:
            assert (principal, role) == (f"{caller}@example.com", caller)
            assert f"role {caller} may not" in problem["detail"]


def test_the_open_endpoints_need_no_token(service):
    with service.client(None) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert "ledger_http_requests_total" in client.get("/metrics").text
        assert "/v1/facts/{kind}" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200
