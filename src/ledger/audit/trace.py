"""`ledger trace`: every fact behind every number on an invoice or a customer-month.

The summary per usage line comes from the projections (on-time usage per customer × month × meter
× source id keeps fact count, units, first and last position and a digest), so it returns at once
even for a line made of millions of facts. `--events` then streams the contributing facts from the
store with a server-side cursor, recomputing the digest as it goes, so memory stays flat.

Line digest: XOR over the contributing facts of PostgreSQL's `hashint8extended(position, units)`,
written as 16 hex digits. It is order-independent, so the projector maintains it incrementally,
and anyone can recompute it from the listed facts.
"""

from __future__ import annotations

from typing import Any, Iterator

import psycopg
from psycopg.rows import dict_row

from ledger.audit.render import render_invoice, render_pricing  # noqa: F401  (the text of a trace lives there)
from ledger.errors import NotFoundError

P = "ledger_proj"


def _one(conn: psycopg.Connection, query: str, params: tuple) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchone()


def _all(conn: psycopg.Connection, query: str, params: tuple) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def digest_hex(value: int | None) -> str | None:
    return None if value is None else f"{value & 0xFFFFFFFFFFFFFFFF:016x}"


def _invoice(conn: psycopg.Connection, invoice_id: str) -> dict[str, Any]:
    row = _one(conn, f"""
        SELECT i.invoice_id, r.customer_id, i.period, i.total_cents, i.position, i.source, i.source_customer_id,
               i.issued_at, i.currency, r.lines_cents,
               ledger_recorded_at(e.state) AS recorded_at,
               ledger_state(e.state) ->> 'recorded_from' AS recorded_from,
               (ledger_state(e.state) ->> 'recorded_line')::bigint AS recorded_line,
               e.chain_hash
        FROM invoice_facts i
        JOIN ledger_events e ON e.notification_id = i.position
        LEFT JOIN {P}.invoice_resolved r ON r.invoice_id = i.invoice_id
        WHERE i.invoice_id = %s""", (invoice_id,))
    if row is None:
        raise NotFoundError(f"invoice {invoice_id!r} does not exist", what="invoice", key=invoice_id)
    row["chain_hash"] = bytes(row["chain_hash"]).hex() if row["chain_hash"] else None
    return row


def _resolution(conn: psycopg.Connection, source: str, source_customer_id: str, at) -> dict[str, Any] | None:
    """The identity link a source id resolves through at an instant, with every link known now."""
    return _one(conn, """
        SELECT position, customer_id, effective_from FROM identity_link_facts
        WHERE source = %s AND source_customer_id = %s AND effective_from <= %s
        ORDER BY effective_from DESC, position DESC LIMIT 1""", (source, source_customer_id, at))


def _usage_summary(conn: psycopg.Connection, customer_id: str, month: str, meter: str | None = None
                   ) -> list[dict[str, Any]]:
    rows = _all(conn, f"""
        SELECT meter, sum(event_count)::bigint AS fact_count, sum(units)::bigint AS units,
               min(first_position) AS first_position, max(last_position) AS last_position,
               bit_xor(digest) AS digest,
               array_agg(source || ':' || source_customer_id ORDER BY source, source_customer_id) AS source_ids
        FROM {P}.usage_on_time
        WHERE customer_id = %s AND month = %s AND (%s::text IS NULL OR meter = %s)
        GROUP BY meter ORDER BY meter""", (customer_id, month, meter, meter))
    for row in rows:
        row["digest"] = digest_hex(row["digest"])
    return rows


def _meter_numbers(conn: psycopg.Connection, customer_id: str, month: str) -> dict[str, dict[str, Any]]:
    return {r["meter"]: r for r in _all(conn, f"""
        SELECT meter, on_time_units, late_units, included_units, overage_units, expected_cents, billed_units,
               billed_cents
        FROM {P}.customer_month_meter WHERE customer_id = %s AND month = %s""", (customer_id, month))}


def _price_entry(conn: psycopg.Connection, plan: str | None, month: str, known_at: int | None = None
                 ) -> dict[str, Any] | None:
    """The plan's price entry for the month (SPEC §3.4), from the price facts at positions <= KNOWN_AT (all: None)."""
    if plan is None:
        return None
    return _one(conn, """
        SELECT plan, effective_month, base_fee_cents, meters, position FROM price_facts
        WHERE plan = %s AND effective_month <= %s AND (%s::bigint IS NULL OR position <= %s)
        ORDER BY effective_month DESC, position DESC LIMIT 1""", (plan, month, known_at, known_at))


def _attribute_version(conn: psycopg.Connection, customer_id: str, month: str) -> dict[str, Any] | None:
    """The SCD2 version a customer-month takes (SPEC §3.3): in effect at its first instant, else the first within."""
    return _one(conn, f"""
        SELECT version, valid_from, valid_to, name, segment, owner, plan, region
        FROM {P}.dim_customer
        WHERE customer_id = %(c)s
          AND valid_from < (%(m)s || '-01')::timestamptz + interval '1 month'
          AND (valid_to IS NULL OR valid_to > (%(m)s || '-01')::timestamptz)
        ORDER BY (valid_from <= (%(m)s || '-01')::timestamptz) DESC, valid_from DESC
        LIMIT 1""", {"c": customer_id, "m": month})


def _credits(conn: psycopg.Connection, where: str, params: tuple) -> list[dict[str, Any]]:
    return _all(conn, f"""
        SELECT credit_id, customer_id, invoice_id, amount_cents, reason, memo, actor, issued_at,
               to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM') AS posting_month, position
        FROM credit_facts WHERE {where} ORDER BY position""", params)


def _late(conn: psycopg.Connection, customer_id: str, month: str) -> list[dict[str, Any]]:
    return _all(conn, f"""
        SELECT original_month, meter, posting_month, units, amount_cents, event_count, first_position, last_position
        FROM {P}.late_adjustments
        WHERE customer_id = %s AND (original_month = %s OR posting_month = %s)
        ORDER BY original_month, meter, posting_month""", (customer_id, month, month))


def _exceptions(conn: psycopg.Connection, invoice_id: str | None, customer_id: str | None, month: str
                ) -> list[dict[str, Any]]:
    return _all(conn, f"""
        SELECT kind, invoice_id, customer_id, source, source_customer_id, month, meter, expected, actual, difference,
               unit
        FROM {P}.exceptions
        WHERE (%(i)s::text IS NOT NULL AND invoice_id = %(i)s)
           OR (customer_id = %(c)s AND month = %(m)s AND kind <> 'invoice_total_mismatch')
        ORDER BY kind, meter NULLS FIRST""", {"i": invoice_id, "c": customer_id, "m": month})


def _pricing(conn: psycopg.Connection, customer_id: str, month: str) -> dict[str, Any] | None:
    """How the month is priced (SPEC §4.0): its pricing point E(m) and the calculation in force there, with the
    promotion that put it in force (none for v1, in force from the store's start)."""
    row = _one(conn, f"""
        SELECT a.priced_at, a.calculation, a.plan_rule, (pc.month IS NOT NULL) AS is_closed, pc.close_position,
               f.from_position
        FROM {P}.customer_month_attrs a
        LEFT JOIN {P}.period_close pc ON pc.month = a.month
        JOIN {P}.calc_in_force f ON f.name = a.calculation
         AND coalesce(a.priced_at, 9223372036854775806) >= f.from_position
         AND coalesce(a.priced_at, 9223372036854775806) < f.through_position
        WHERE a.customer_id = %s AND a.month = %s""", (customer_id, month))
    if row is None:
        return None
    promotion = _one(conn, """
        SELECT position, actor, reason, promoted_at FROM calculation_promoted_facts WHERE position = %s""",
                     (row["from_position"],)) if row["from_position"] else None
    return {"status": "closed" if row["is_closed"] else "open",
            "priced_at_position": row["priced_at"],  # E(m): the position before the close; null while open (head)
            "close_position": row["close_position"],
            "calculation": row["calculation"], "plan_rule": row["plan_rule"], "promotion": promotion}


_CAUSE_FACTS = """
    SELECT e.notification_id AS position, 'attributes' AS kind, ledger_recorded_at(e.state) AS recorded_at,
           jsonb_build_object('customer_id', a.customer_id, 'effective_from', a.effective_from,
                              'attributes', a.attrs) AS fact
    FROM attribute_facts a JOIN ledger_events e ON e.notification_id = a.position
    WHERE %(cause)s = 'repricing' AND a.position BETWEEN %(first)s AND %(last)s AND a.customer_id = %(c)s
    UNION ALL
    SELECT e.notification_id, 'prices', ledger_recorded_at(e.state),
           jsonb_build_object('plan', p.plan, 'effective_month', p.effective_month,
                              'base_fee_cents', p.base_fee_cents, 'meters', p.meters)
    FROM price_facts p JOIN ledger_events e ON e.notification_id = p.position
    WHERE %(cause)s = 'repricing' AND p.position BETWEEN %(first)s AND %(last)s
      AND p.effective_month <= %(m)s
      AND p.plan IN (SELECT attrs ->> 'plan' FROM attribute_facts WHERE customer_id = %(c)s)
    UNION ALL
    SELECT position, 'calculation promotion', promoted_at,
           jsonb_build_object('name', name, 'plan_rule', plan_rule, 'actor', actor, 'reason', reason)
    FROM calculation_promoted_facts
    WHERE %(cause)s = 'recalculation' AND position BETWEEN %(first)s AND %(last)s
    ORDER BY 1"""


def _restatements(conn: psycopg.Connection, customer_id: str, month: str) -> list[dict[str, Any]]:
    """The restatements of the month and those posted to it (SPEC §4.6), each with the facts that caused it: the
    facts of its cause at its positions that could change the customer's amounts (a group of one change: that fact)."""
    groups = _all(conn, f"""
        SELECT original_month, meter, posting_month, cause, amount_cents, change_count, first_position, last_position
        FROM {P}.restatements
        WHERE customer_id = %s AND (original_month = %s OR posting_month = %s)
        ORDER BY original_month, posting_month, cause, meter""", (customer_id, month, month))
    for group in groups:
        group["caused_by"] = _all(conn, _CAUSE_FACTS, {
            "cause": group["cause"], "first": group["first_position"], "last": group["last_position"],
            "c": customer_id, "m": group["original_month"]})
    return groups


def line_usage(line: dict[str, Any], customer: str | None, summaries: dict[str, dict], numbers: dict[str, dict],
               version: dict[str, Any] | None, price: dict[str, Any] | None) -> dict[str, Any] | None:
    """What an invoice line's usage was: the on-time facts behind it, its plan and price entry, expected against
    billed; None for a line that is not usage, `unattributed` when the invoice's customer is unknown."""
    if line["kind"] != "usage":
        return None
    if not customer:
        return {"fact_count": 0, "units": 0, "first_position": None, "last_position": None, "digest": None,
                "unattributed": True}
    summary = summaries.get(line["meter"], {})
    meter_numbers = numbers.get(line["meter"], {})
    return {
        "fact_count": summary.get("fact_count", 0), "units": summary.get("units", 0),
        "first_position": summary.get("first_position"), "last_position": summary.get("last_position"),
        "digest": summary.get("digest"), "source_ids": summary.get("source_ids", []),
        "plan": version["plan"] if version else None, "plan_version": version["version"] if version else None,
        "price_entry": ({"plan": price["plan"], "effective_month": price["effective_month"],
                         "position": price["position"], "meter": price["meters"].get(line["meter"])}
                        if price else None),
        "included_units": meter_numbers.get("included_units"),
        "expected_cents": meter_numbers.get("expected_cents"),
        "billed_units": meter_numbers.get("billed_units"),
        "billed_vs_metered_units": line["quantity"] - meter_numbers.get("on_time_units", 0),
    }


def trace_invoice(conn: psycopg.Connection, invoice_id: str) -> dict[str, Any]:
    """The invoice, how its customer resolved, each line with the facts behind it, credits, adjustments, exceptions."""
    inv = _invoice(conn, invoice_id)
    customer, period = inv["customer_id"], inv["period"]
    link = _resolution(conn, inv["source"], inv["source_customer_id"], inv["issued_at"])
    numbers = _meter_numbers(conn, customer, period) if customer else {}
    summaries = {s["meter"]: s for s in _usage_summary(conn, customer, period)} if customer else {}
    version = _attribute_version(conn, customer, period) if customer else None
    price = _price_entry(conn, version["plan"] if version else None, period)
    lines = []
    for line in _all(conn, """SELECT line_id, kind, meter, quantity, amount_cents FROM invoice_line_facts
                              WHERE invoice_id = %s ORDER BY line_no""", (invoice_id,)):
        usage = line_usage(line, customer, summaries, numbers, version, price)
        lines.append({**line, "usage": usage})
    return {
        "invoice": {k: inv[k] for k in ("invoice_id", "customer_id", "period", "total_cents", "position", "source",
                                         "source_customer_id", "issued_at", "currency", "lines_cents",
                                         "recorded_at", "recorded_from", "recorded_line", "chain_hash")},
        "resolution": link,
        "attribute_version": version,
        "lines": lines,
        "credits": _credits(conn, "invoice_id = %s", (invoice_id,)),
        "late_adjustments": _late(conn, customer, period) if customer else [],
        "pricing": _pricing(conn, customer, period) if customer else None,
        "restatements": _restatements(conn, customer, period) if customer else [],
        "exceptions": _exceptions(conn, invoice_id, customer, period),
    }


def trace_customer_month(conn: psycopg.Connection, customer_id: str, month: str) -> dict[str, Any]:
    """The same view for a customer-month: usage by meter, invoices, credits, adjustments, attribute version."""
    row = _one(conn, f"SELECT * FROM {P}.customer_month WHERE customer_id = %s AND month = %s",
               (customer_id, month))
    if row is None:
        raise NotFoundError(f"no customer-month {customer_id} {month}: no usage, invoice, credit or adjustment",
                            what="customer-month", key=f"{customer_id} {month}")
    numbers = _meter_numbers(conn, customer_id, month)
    usage = []
    for summary in _usage_summary(conn, customer_id, month):
        usage.append({**summary, **{k: v for k, v in numbers.get(summary["meter"], {}).items() if k != "meter"}})
    for meter, n in numbers.items():  # meters with only late units or billed lines
        if not any(u["meter"] == meter for u in usage):
            usage.append({"meter": meter, "fact_count": 0, "units": 0, "first_position": None, "last_position": None,
                          "digest": None, **{k: v for k, v in n.items() if k != "meter"}})
    usage.sort(key=lambda u: u["meter"])
    version = _attribute_version(conn, customer_id, month)
    pricing = _pricing(conn, customer_id, month)
    return {
        "customer_month": row,
        "attribute_version": version,
        "pricing": pricing,
        # the plan's price as known at the pricing point: the month-start plan then, the price facts before it
        "price_entry": _price_entry(conn, row["plan"], month, pricing["priced_at_position"] if pricing else None),
        "usage": usage,
        "invoices": _all(conn, f"""SELECT invoice_id, period, total_cents, lines_cents, issued_at, position
                                   FROM {P}.invoice_resolved WHERE customer_id = %s AND period = %s
                                   ORDER BY invoice_id""", (customer_id, month)),
        "credits": _credits(conn, "customer_id = %s AND to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM') = %s",
                            (customer_id, month)),
        "late_adjustments": _late(conn, customer_id, month),
        "restatements": _restatements(conn, customer_id, month),
        "exceptions": _exceptions(conn, None, customer_id, month),
    }


# The on-time usage facts of a (customer, month, meter) line (SPEC §4.1), for a query over `usage_facts u` with the
# `cutoff` of its month (c(m), or the largest bigint while open) and the parameters m, c and meter: its meter and
# month, before the close, and resolved to the customer with the links known before the close. Written once, for
# `ledger trace --events` and the web's facts pages.
LINE_CUTOFF = f"""cutoff AS MATERIALIZED (
                SELECT coalesce((SELECT close_position FROM {P}.period_close WHERE month = %(m)s),
                                9223372036854775807) AS c
            )"""
LINE_FACTS = f"""u.meter = %(meter)s AND u.position < cutoff.c
              AND u.event_time >= (%(m)s || '-01')::timestamptz
              AND u.event_time < (%(m)s || '-01')::timestamptz + interval '1 month'
              AND EXISTS (SELECT 1 FROM {P}.link_range r
                          WHERE r.source = u.source AND r.source_customer_id = u.source_customer_id
                            AND r.known_after < cutoff.c AND cutoff.c <= r.known_through
                            AND r.valid_from <= u.event_time AND u.event_time < r.valid_to
                            AND r.customer_id = %(c)s)"""


def contributing_facts(conn: psycopg.Connection, customer_id: str, month: str, meter: str,
                       first_position: int, last_position: int, source_ids: list[str]) -> Iterator[dict[str, Any]]:
    """The on-time usage facts of (customer, month, meter), streamed in position order (SPEC §4.1)."""
    pairs = [s.split(":", 1) for s in source_ids]
    # a server-side cursor lives in a transaction: rows arrive 10k at a time, memory stays flat
    with conn.transaction(), conn.cursor(name="trace_events", row_factory=dict_row) as cur:
        cur.itersize = 10_000
        cur.execute(f"""
            WITH {LINE_CUTOFF}
            SELECT u.position, u.event_id, u.source, u.source_customer_id, u.event_time, u.quantity AS units,
                   hashint8extended(u.position, u.quantity) AS h, b.recorded_from, u.line AS recorded_line
            FROM usage_facts u
            CROSS JOIN cutoff
            -- the batch event that recorded the fact: the first at a later position
            CROSS JOIN LATERAL (SELECT ledger_state(e.state) ->> 'recorded_from' AS recorded_from
                                FROM ledger_events e
                                WHERE e.topic = 'ledger.UsageBatchRecorded' AND e.notification_id > u.position
                                ORDER BY e.notification_id LIMIT 1) b
            JOIN unnest(%(sources)s::text[], %(ids)s::text[]) AS s(source, source_customer_id) ON true
            WHERE u.position BETWEEN %(first)s AND %(last)s
              AND u.source = s.source AND u.source_customer_id = s.source_customer_id
              AND {LINE_FACTS}
            ORDER BY u.position""",
            {"m": month, "c": customer_id, "meter": meter, "first": first_position, "last": last_position,
             "sources": [p[0] for p in pairs], "ids": [p[1] for p in pairs]})
        yield from cur
