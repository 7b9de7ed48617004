"""`ledger calc diff NAME` (SPEC §6.2): what promoting a calculation now would change, built beside the one in force
from the same facts and the same pricing rule (projections/pricing.sql), and rolled back: readers see nothing.

Only a customer-month whose days may have more than one plan can be priced differently by two plan rules: with one
plan all month, daily_prorated equals month_start. So the diff reprices those customer-months alone: those an
attribute fact takes effect strictly inside (split_month) whose versions at the head (dim_customer) name more than
one plan in the month. It prices them from the read models' aggregates: usage_on_time, usage_late, and
usage_on_time_day for the months whose days have more than one plan. It reads no usage fact.
Closed months: every customer whose days split; open months: the customers with a customer-month row.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from .runner import LIVE_SCHEMA
from .templates import FULL, STAGE, Target, sections

COLUMNS = ("customer_id", "month", "meter", "status", "in_force_cents", "candidate_cents", "difference_cents")


@dataclass(frozen=True)
class CalcDiff:
    in_force: str
    candidate: str
    rows: list[tuple]  # COLUMNS, sorted by customer_id, month, meter ('' for the base fee first)

    def summary(self) -> dict:
        by_month: dict[str, int] = {}
        for row in self.rows:
            by_month[row[1]] = by_month.get(row[1], 0) + row[6]
        return {"lines": len(self.rows), "customers": len({r[0] for r in self.rows}),
                "difference_cents_by_month": dict(sorted(by_month.items())),
                "difference_cents": sum(by_month.values())}


def diff(conn: psycopg.Connection, *, in_force: tuple[str, str], candidate: tuple[str, str], head: int) -> CalcDiff:
    """Lines whose amount at HEAD differs between the calculation in force and CANDIDATE ((name, plan rule) each).
    Runs in a transaction it rolls back; the read models must be current through HEAD."""
    target = Target(LIVE_SCHEMA, head)
    with conn.transaction(force_rollback=True):
        conn.execute(f"DROP TABLE IF EXISTS {STAGE}.price_req")
        conn.execute(target.render("""
            CREATE TABLE {stage}.price_req AS
            WITH split AS (   -- split, and by versions that name more than one plan (a null plan counts as one)
                SELECT s.customer_id, s.month FROM {schema}.split_month s
                JOIN {schema}.dim_customer d ON d.customer_id = s.customer_id
                 AND d.valid_from < ((s.month || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC'
                 AND (d.valid_to IS NULL OR d.valid_to > (s.month || '-01')::timestamp AT TIME ZONE 'UTC')
                WHERE s.first_position <= {head}
                GROUP BY s.customer_id, s.month
                HAVING count(DISTINCT d.plan) + max((d.plan IS NULL)::int) > 1
            ), cm AS (
                SELECT s.customer_id, s.month FROM split s
                WHERE EXISTS (SELECT 1 FROM {schema}.period_close p WHERE p.month = s.month)
                   OR EXISTS (SELECT 1 FROM {schema}.customer_month c
                              WHERE c.customer_id = s.customer_id AND c.month = s.month)
            )
            SELECT row_number() OVER () AS req, cm.customer_id, cm.month, {head}::bigint AS q, side.plan_rule,
                   {head}::bigint AS late_through, NULL::text AS meter, side.side
            FROM cm CROSS JOIN (VALUES ('in_force', %(in_force)s), ('candidate', %(candidate)s)) side(side, plan_rule)
        """, FULL), {"in_force": in_force[1], "candidate": candidate[1]})
        conn.execute(target.render(sections("pricing")["price"], FULL))
        rows = conn.execute(target.render("""
            WITH line AS (
                SELECT r.customer_id, r.month, l.meter, r.side, l.amount_cents
                FROM {stage}.price_line l JOIN {stage}.price_req r USING (req)
            ), pair AS (
                SELECT customer_id, month, meter,
                       coalesce(sum(amount_cents) FILTER (WHERE side = 'in_force'), 0)::bigint AS in_force_cents,
                       coalesce(sum(amount_cents) FILTER (WHERE side = 'candidate'), 0)::bigint AS candidate_cents
                FROM line GROUP BY 1, 2, 3
            )
            SELECT p.customer_id, p.month, p.meter,
                   CASE WHEN EXISTS (SELECT 1 FROM {schema}.period_close c WHERE c.month = p.month)
                        THEN 'closed' ELSE 'open' END,
                   p.in_force_cents, p.candidate_cents, p.candidate_cents - p.in_force_cents
            FROM pair p WHERE p.candidate_cents <> p.in_force_cents
            ORDER BY p.customer_id COLLATE "C", p.month, p.meter COLLATE "C"
        """, FULL)).fetchall()
    return CalcDiff(in_force[0], candidate[0], [tuple(r) for r in rows])
