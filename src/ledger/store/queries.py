"""What commands read from the store before deciding: customers, invoices, credits, closes."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg

from ledger.domain.commands import InvoiceState
from ledger.domain.facts import INVOICE


def customer_exists(conn: psycopg.Connection, customer_id: str) -> bool:
    """A customer exists once it has an attribute fact or an identity link (SPEC §3.3)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM identity_link_facts WHERE customer_id = %s)"
        " OR EXISTS (SELECT 1 FROM attribute_facts WHERE customer_id = %s)",
        (customer_id, customer_id),
    ).fetchone()
    return bool(row[0])


def invoice_state(conn: psycopg.Connection, invoice_id: str) -> InvoiceState | None:
    """The invoice, its customer resolved at issued_at with every link known now, and its credits."""
    stream = INVOICE.fact_id({"invoice_id": invoice_id})
    row = conn.execute(
        """
        SELECT i.invoice_id, i.total_cents,
               (SELECT l.customer_id FROM identity_link_facts l
                 WHERE l.source = i.source AND l.source_customer_id = i.source_customer_id
                   AND l.effective_from <= i.issued_at
                 ORDER BY l.effective_from DESC, l.position DESC LIMIT 1),
               (SELECT coalesce(sum(c.amount_cents), 0) FROM credit_facts c WHERE c.invoice_id = i.invoice_id),
               (SELECT max(originator_version) FROM ledger_events WHERE originator_id = %s)
        FROM invoice_facts i WHERE i.invoice_id = %s
        """,
        (stream, invoice_id),
    ).fetchone()
    if row is None:
        return None
    invoice, total, customer, credited, version = row
    return InvoiceState(invoice, customer, total, int(credited), int(version))


def credit_by_id(conn: psycopg.Connection, credit_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT notification_id, state FROM ledger_events"
        " WHERE topic = 'ledger.CreditIssued' AND ledger_credit_id(state) = %s",
        (credit_id,),
    ).fetchone()
    if row is None:
        return None
    credit = orjson.loads(bytes(row[1]))
    credit["position"] = row[0]
    return credit


def closed_months(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    return {month: {"position": position, "actor": actor, "closed_at": closed_at}
            for month, position, actor, closed_at in conn.execute(
                "SELECT month, position, actor, closed_at FROM period_close_facts")}


def months_with_usage(conn: psycopg.Connection) -> set[str]:
    return {m for (m,) in conn.execute("SELECT month FROM usage_months")}


def head_position(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()
    return int(row[0] or 0)


def fact_count(conn: psycopg.Connection) -> int:
    """How many facts the store holds: its events other than usage batches, plus the usage facts those batches record."""
    row = conn.execute("""
        SELECT count(*) FILTER (WHERE topic <> 'ledger.UsageBatchRecorded')
               + coalesce(sum((ledger_state(state) ->> 'count')::bigint)
                          FILTER (WHERE topic = 'ledger.UsageBatchRecorded'), 0)
        FROM ledger_events""").fetchone()
    return int(row[0] or 0)
