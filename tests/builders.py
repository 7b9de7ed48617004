"""Builders with deterministic ids for test records (override any field)."""

from __future__ import annotations

import json
from typing import Any


def usage(n: int = 1, **overrides: Any) -> dict[str, Any]:
    record = {
        "event_id": f"evt-{n:06d}", "source": "product", "source_customer_id": "pr_1", "meter": "api_calls",
        "quantity": 1, "event_time": "2026-01-15T10:00:00Z",
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not ...}


def line(record: dict[str, Any]) -> str:
    return json.dumps(record)


def link(source: str = "product", scid: str = "pr_1", customer: str = "cus_1",
         effective_from: str = "2025-12-01T00:00:00Z") -> dict[str, Any]:
    return {"source": source, "source_customer_id": scid, "customer_id": customer, "effective_from": effective_from}


def invoice(invoice_id: str = "in_1", scid: str = "bc_1", period: str = "2026-01", total_cents: int = 1000,
            **overrides: Any) -> dict[str, Any]:
    record = {
        "invoice_id": invoice_id, "source": "billing", "source_customer_id": scid, "period": period,
        "issued_at": "2026-02-03T00:00:00Z", "currency": "USD", "total_cents": total_cents,
        "lines": [{"line_id": "L1", "kind": "subscription", "amount_cents": total_cents}],
    }
    record.update(overrides)
    return record
