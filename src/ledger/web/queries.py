"""The pages' own reads: each bounded (a key, a LIMIT, or one customer's rows), so a page stays fast on a store of
millions of facts. The invoice and customer-month traces come from `ledger.audit.trace`; these add what a page
shows around them (the facts behind a usage line page by page, a customer's history, the reconciliation queue).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ledger.audit.trace import LINE_CUTOFF, LINE_FACTS, P
FACTS_PAGE = 100
QUEUE_PAGE = 100
CUSTOMER_DAYS = 400  # the daily chart's span: a year and some, at most this many days


def rows(conn: psycopg.Connection, query: str | sql.Composable, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def one(conn: psycopg.Connection, query: str | sql.Composable, params: Any = None) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchone()


def checkpoint(conn: psycopg.Connection) -> int:
    row = conn.execute(f"SELECT position FROM {P}.checkpoint").fetchone()
    return int(row[0]) if row else 0


def last_verify(conn: psycopg.Connection) -> dict[str, Any] | None:
    """The last `ledger verify` (command or service) and what it found."""
    return one(conn, "SELECT run_id, at, head_position, head_hash, facts, ok, projections, first_mismatch, seconds"
                     " FROM verify_runs ORDER BY run_id DESC LIMIT 1")


# -- the facts behind a usage line ---------------------------------------------------------------------------
def usage_summary(conn: psycopg.Connection, customer_id: str, month: str, meter: str) -> dict[str, Any] | None:
    """On-time usage of a customer-month-meter as the projections keep it (SPEC §4.1): count, units, positions,
    the source ids it came through."""
    row = one(conn, f"""
        SELECT sum(event_count)::bigint AS fact_count, sum(units)::bigint AS units,
               min(first_position) AS first_position, max(last_position) AS last_position,
               bit_xor(digest) AS digest,
               array_agg(source || ':' || source_customer_id ORDER BY source, source_customer_id) AS source_ids
        FROM {P}.usage_on_time WHERE customer_id = %s AND month = %s AND meter = %s""", (customer_id, month, meter))
    if row is None or row["fact_count"] is None:
        return None
    row["digest"] = f"{row['digest'] & 0xFFFFFFFFFFFFFFFF:016x}"
    return row


def facts_page(conn: psycopg.Connection, customer_id: str, month: str, meter: str, summary: dict[str, Any], *,
               after: int | None = None, limit: int = FACTS_PAGE) -> list[dict[str, Any]]:
    """One page of the on-time usage facts of (customer, month, meter) in position order, after position AFTER:
    the rule of `ledger trace --events` (SPEC §4.1), with each fact's source file and line and the chain link of
    the batch event that recorded it."""
    pairs = [s.split(":", 1) for s in summary["source_ids"]]
    first = summary["first_position"] if after is None else max(summary["first_position"], after + 1)
    return rows(conn, f"""
        WITH {LINE_CUTOFF}, page AS (
            SELECT u.position, u.event_id, u.source, u.source_customer_id, u.event_time, u.quantity AS units,
                   u.line AS recorded_line
            FROM usage_facts u
            CROSS JOIN cutoff
            WHERE u.position BETWEEN %(first)s AND %(last)s
              -- a cheap test on each row first; the exact (source, id) pairs on the few that pass it
              AND u.source_customer_id = ANY(%(ids)s::text[])
              AND (u.source, u.source_customer_id) IN (SELECT * FROM unnest(%(sources)s::text[], %(ids)s::text[]))
              AND {LINE_FACTS}
            ORDER BY u.position
            LIMIT %(limit)s
        )
        SELECT page.*, b.batch_position, b.recorded_from, b.chain_hash
        FROM page
        -- the batch event that recorded the fact: the first at a later position; its link covers the fact's row
        CROSS JOIN LATERAL (SELECT e.notification_id AS batch_position,
                                   ledger_state(e.state) ->> 'recorded_from' AS recorded_from,
                                   encode(e.chain_hash, 'hex') AS chain_hash
                            FROM ledger_events e
                            WHERE e.topic = 'ledger.UsageBatchRecorded' AND e.notification_id > page.position
                            ORDER BY e.notification_id LIMIT 1) b
        ORDER BY page.position""",
        {"m": month, "c": customer_id, "meter": meter, "first": first, "last": summary["last_position"],
         "sources": [p[0] for p in pairs], "ids": [p[1] for p in pairs], "limit": limit})


def restatements(conn: psycopg.Connection, customer_id: str, month: str | None = None) -> list[dict[str, Any]]:
    return rows(conn, f"""
        SELECT customer_id, original_month, meter, posting_month, cause, amount_cents, change_count, first_position,
               last_position
        FROM {P}.restatements
        WHERE customer_id = %(c)s AND (%(m)s::text IS NULL OR original_month = %(m)s OR posting_month = %(m)s)
        ORDER BY original_month, meter, posting_month, cause""", {"c": customer_id, "m": month})


# -- customer 360 --------------------------------------------------------------------------------------------
def customer_versions(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    return rows(conn, f"""SELECT version, valid_from, valid_to, name, segment, owner, plan, region
                          FROM {P}.dim_customer WHERE customer_id = %s ORDER BY version""", (customer_id,))


def customer_months(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    return rows(conn, f"""SELECT month, plan, usage_units, expected_cents, invoiced_cents, credits_cents,
                                 late_adjustment_cents, restatement_cents, balance_cents, variance_cents, calculation
                          FROM {P}.customer_month WHERE customer_id = %s ORDER BY month""", (customer_id,))


def customer_meter_months(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    return rows(conn, f"""SELECT month, meter, on_time_units, late_units, expected_cents, billed_units, billed_cents
                          FROM {P}.customer_month_meter WHERE customer_id = %s ORDER BY month, meter""",
                (customer_id,))


def customer_daily(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    """Daily on-time units by meter over the customer's last CUSTOMER_DAYS days of usage."""
    return rows(conn, f"""
        WITH last AS (SELECT max(day) AS d FROM {P}.usage_daily WHERE customer_id = %(c)s)
        SELECT day, meter, units FROM {P}.usage_daily, last
        WHERE customer_id = %(c)s AND day > last.d - %(days)s
        ORDER BY day, meter""", {"c": customer_id, "days": CUSTOMER_DAYS})


def customer_anomalies(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    return rows(conn, f"""SELECT day, meter, units, baseline_units, score FROM {P}.anomalies
                          WHERE customer_id = %s ORDER BY day, meter LIMIT 1000""", (customer_id,))


def customer_invoices(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    return rows(conn, f"""SELECT invoice_id, period, total_cents, lines_cents, issued_at, position
                          FROM {P}.invoice_resolved WHERE customer_id = %s ORDER BY period, invoice_id LIMIT 1000""",
                (customer_id,))


def customer_credits(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    return rows(conn, """SELECT credit_id, invoice_id, amount_cents, reason, memo, actor, issued_at, position
                         FROM credit_facts WHERE customer_id = %s ORDER BY position LIMIT 1000""", (customer_id,))


def customer_late(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    return rows(conn, f"""SELECT original_month, meter, posting_month, units, amount_cents, event_count,
                                 first_position, last_position
                          FROM {P}.late_adjustments WHERE customer_id = %s
                          ORDER BY original_month, meter, posting_month LIMIT 1000""", (customer_id,))


def customer_links(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    """The source ids linked to the customer, each link with when it takes effect and where it was recorded."""
    return rows(conn, """SELECT position, source, source_customer_id, effective_from FROM identity_link_facts
                         WHERE customer_id = %s ORDER BY effective_from, position LIMIT 1000""", (customer_id,))


def customer_exists(conn: psycopg.Connection, customer_id: str) -> bool:
    return conn.execute(f"""SELECT EXISTS (SELECT 1 FROM {P}.dim_customer WHERE customer_id = %(c)s)
                                OR EXISTS (SELECT 1 FROM {P}.customer_month WHERE customer_id = %(c)s)""",
                        {"c": customer_id}).fetchone()[0]


# -- reconciliation ------------------------------------------------------------------------------------------
QUEUE_COLUMNS = ("kind", "invoice_id", "customer_id", "source", "source_customer_id", "month", "meter", "expected",
                 "actual", "difference", "unit")
QUEUE_SORTS = {"kind": "kind", "month": "month", "customer": "customer_id", "difference": "abs(difference)"}


def queue_filter(kind: str | None, month: str | None, customer: str | None, min_difference: int | None
                 ) -> tuple[sql.Composable, dict[str, Any]]:
    where = [sql.SQL("true")]
    params: dict[str, Any] = {}
    for column, value in (("kind", kind), ("month", month), ("customer_id", customer)):
        if value:
            where.append(sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column)))
            params[column] = value
    if min_difference is not None:
        where.append(sql.SQL("abs(difference) >= %(min_difference)s"))
        params["min_difference"] = min_difference
    return sql.SQL(" AND ").join(where), params


def exceptions_page(conn: psycopg.Connection, *, kind: str | None, month: str | None, customer: str | None,
                    min_difference: int | None, sort: str, descending: bool, page: int
                    ) -> tuple[list[dict[str, Any]], bool]:
    """A page of the exceptions, filtered and sorted (ties by the export's key); and whether more follow."""
    where, params = queue_filter(kind, month, customer, min_difference)
    order = sql.SQL(QUEUE_SORTS[sort] + (" DESC" if descending else " ASC") + " NULLS LAST")
    found = rows(conn, sql.SQL("""
        SELECT {columns} FROM {table} WHERE {where}
        ORDER BY {order}, kind, invoice_id NULLS FIRST, customer_id NULLS FIRST, source NULLS FIRST,
                 source_customer_id NULLS FIRST, month NULLS FIRST, meter NULLS FIRST
        LIMIT {limit} OFFSET {offset}""").format(
        columns=sql.SQL(", ").join(map(sql.Identifier, QUEUE_COLUMNS)), table=sql.SQL(f"{P}.exceptions"),
        where=where, order=order, limit=sql.Literal(QUEUE_PAGE + 1), offset=sql.Literal(page * QUEUE_PAGE)),
        params)
    return found[:QUEUE_PAGE], len(found) > QUEUE_PAGE


def exception_totals(conn: psycopg.Connection, *, kind: str | None, month: str | None, customer: str | None,
                     min_difference: int | None) -> list[dict[str, Any]]:
    """Count and summed difference by kind and month, under the same filter as the queue."""
    where, params = queue_filter(kind, month, customer, min_difference)
    return rows(conn, sql.SQL(f"""
        SELECT kind, month, unit, count(*) AS count, sum(difference)::bigint AS difference,
               sum(abs(difference))::bigint AS abs_difference
        FROM {P}.exceptions WHERE {{where}} GROUP BY kind, month, unit ORDER BY kind, month NULLS FIRST, unit
        LIMIT 2000""").format(where=where), params)


def exception_kinds(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(f"SELECT DISTINCT kind FROM {P}.exceptions ORDER BY kind")]


def open_months(conn: psycopg.Connection) -> list[str]:
    """Months with usage, invoices or credits that are not closed: what Finance may close."""
    return [r[0] for r in conn.execute(f"""
        SELECT DISTINCT month FROM {P}.customer_month c
        WHERE NOT EXISTS (SELECT 1 FROM {P}.period_close p WHERE p.month = c.month) ORDER BY month""")]


def closed_months(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return rows(conn, f"SELECT * FROM {P}.period_close ORDER BY month")


# -- calculations --------------------------------------------------------------------------------------------
def recalculations(conn: psycopg.Connection, since_position: int, limit: int = 2000) -> list[dict[str, Any]]:
    """Restatements a promotion at or after SINCE_POSITION caused (cause recalculation)."""
    return rows(conn, f"""
        SELECT customer_id, original_month, meter, posting_month, cause, amount_cents, change_count,
               first_position, last_position
        FROM {P}.restatements WHERE cause = 'recalculation' AND last_position >= %s
        ORDER BY customer_id COLLATE "C", original_month, meter COLLATE "C", posting_month LIMIT %s""",
        (since_position, limit))


# -- search --------------------------------------------------------------------------------------------------
def search(conn: psycopg.Connection, text: str, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
    """Invoices, customers and source ids whose id equals TEXT or starts with it (SOURCE:ID names one source's)."""
    prefix = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    source, _, source_id = text.partition(":") if ":" in text else (None, None, text)
    source_prefix = (source_id or "").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return {
        "invoices": rows(conn, """SELECT invoice_id, source, source_customer_id, period, total_cents
                                  FROM invoice_facts WHERE invoice_id LIKE %s ORDER BY invoice_id LIMIT %s""",
                         (prefix, limit)),
        "customers": rows(conn, f"""SELECT DISTINCT ON (customer_id) customer_id, name, segment, plan
                                    FROM {P}.dim_customer WHERE customer_id LIKE %s
                                    ORDER BY customer_id, version DESC LIMIT %s""", (prefix, limit)),
        "source_ids": rows(conn, """SELECT source, source_customer_id, customer_id, effective_from, position
                                    FROM identity_link_facts
                                    WHERE source_customer_id LIKE %s AND (%s::text IS NULL OR source = %s)
                                    ORDER BY source, source_customer_id, effective_from LIMIT %s""",
                           (source_prefix, source, source, limit)),
    }


# -- the invoice trace, by key -------------------------------------------------------------------------------
def invoice_trace(conn: psycopg.Connection, invoice_id: str) -> dict[str, Any]:
    """`ledger.audit.trace.trace_invoice`, the same dictionary, with the invoice and its lines read by key (the
    projected invoice's position, then its one event) instead of through the fact views, which decode every
    invoice event of the store: on the 10M-fact benchmark store 1.2 s of the trace's 1.3 s. An invoice the
    projections do not know yet goes the views' way."""
    from ledger.audit import trace as t

    head = one(conn, f"""
        SELECT r.invoice_id, r.customer_id, r.period, r.total_cents, r.position, r.source, r.source_customer_id,
               r.issued_at, r.lines_cents, ledger_state(e.state) AS state, ledger_recorded_at(e.state) AS recorded_at,
               encode(e.chain_hash, 'hex') AS chain_hash
        FROM {P}.invoice_resolved r JOIN ledger_events e ON e.notification_id = r.position
        WHERE r.invoice_id = %s""", (invoice_id,))
    if head is None:
        return t.trace_invoice(conn, invoice_id)
    state = head.pop("state")
    inv = {**head, "currency": state.get("currency"), "recorded_from": state.get("recorded_from"),
           "recorded_line": state.get("recorded_line")}
    customer, period = inv["customer_id"], inv["period"]
    link = t._resolution(conn, inv["source"], inv["source_customer_id"], inv["issued_at"])
    numbers = t._meter_numbers(conn, customer, period) if customer else {}
    summaries = {s["meter"]: s for s in t._usage_summary(conn, customer, period)} if customer else {}
    version = t._attribute_version(conn, customer, period) if customer else None
    price = t._price_entry(conn, version["plan"] if version else None, period)
    lines = []
    for raw in state.get("lines") or []:
        line = {"line_id": raw.get("line_id"), "kind": raw.get("kind"), "meter": raw.get("meter"),
                "quantity": raw.get("quantity"), "amount_cents": raw.get("amount_cents")}
        usage = t.line_usage(line, customer, summaries, numbers, version, price)
        lines.append({**line, "usage": usage})
    return {"invoice": inv, "resolution": link, "attribute_version": version, "lines": lines,
            "credits": t._credits(conn, "invoice_id = %s", (invoice_id,)),
            "late_adjustments": t._late(conn, customer, period) if customer else [],
            "exceptions": t._exceptions(conn, invoice_id, customer, period)}
