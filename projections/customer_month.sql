-- grain: one row per customer x month; key: (customer_id, month)
-- facts read: usage_facts (through customer_month_meter), invoice_facts (through invoice_resolved),
--             credit_facts, late postings (through late_adjustments), attribute_facts (through customer_month_attrs),
--             price_facts (through plan_month_fee, customer_month_priced), restatement postings (restatements)
-- SPEC §4.4: a row for each (customer, month) with on-time usage, a late adjustment posting, a restatement posting,
-- an invoice period or a credit posting. balance = invoiced - credits + late adjustments + restatements; expected
-- and variance empty without a plan. Attributes, plan, expected amounts and calculation as known at the month's
-- pricing point (SPEC §4.0; customer_month_attrs).
-- read model: finance
-- depends on: customer_month_attrs, customer_month_meter, customer_month_priced, invoice_resolved, late_adjustments, plan_month_fee, restatements
-- rebuild: fill
-- increment: refill scope (delete, fill)
-- increment on: every run
-- recomputed whole on: calculation_promoted_facts
-- added in place: add_on_time
-- @create
CREATE TABLE {schema}.customer_month (
    customer_id           text NOT NULL,
    month                 text NOT NULL,
    segment               text,
    owner                 text,
    plan                  text,
    region                text,
    usage_units           bigint NOT NULL,
    expected_cents        bigint,
    invoiced_cents        bigint NOT NULL,
    credits_cents         bigint NOT NULL,
    late_adjustment_cents bigint NOT NULL,
    restatement_cents     bigint NOT NULL,
    balance_cents         bigint NOT NULL,
    variance_cents        bigint,
    calculation           text
) WITH (fillfactor = 85);  -- room for in-place (HOT) updates by the additive incremental path
-- @delete
DELETE FROM {schema}.customer_month WHERE {cm[customer_id, month]};
-- @fill
INSERT INTO {schema}.customer_month
WITH credit AS (
    SELECT customer_id, to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, amount_cents
    FROM credit_facts
    WHERE position <= {head}
), part AS (        -- on-time usage through customer_month_meter: its rows with on-time facts. Every branch's
                    -- columns are of one type (bigint), so the planner appends the branches with no projection
                    -- step per row each (1.65M rows on the wide shape: 4.1-4.3 s -> 3.8-3.9 s)
    SELECT customer_id, month, on_time_units AS usage_units, expected_cents AS metered_cents, 0::bigint AS invoiced,
           0::bigint AS credits, 0::bigint AS late_adjustment, 0::bigint AS restatement
    FROM {schema}.customer_month_meter WHERE on_time_facts > 0 AND {cm[customer_id, month]}
    UNION ALL
    SELECT customer_id, period, 0::bigint, NULL::bigint, total_cents, 0::bigint, 0::bigint, 0::bigint
    FROM {schema}.invoice_resolved WHERE customer_id IS NOT NULL AND {cm[customer_id, period]}
    UNION ALL
    SELECT customer_id, month, 0::bigint, NULL::bigint, 0::bigint, amount_cents, 0::bigint, 0::bigint FROM credit
    WHERE {cm[customer_id, month]}
    UNION ALL
    SELECT customer_id, posting_month, 0::bigint, NULL::bigint, 0::bigint, 0::bigint, amount_cents, 0::bigint
    FROM {schema}.late_adjustments WHERE {cm[customer_id, posting_month]}
    UNION ALL
    SELECT customer_id, posting_month, 0::bigint, NULL::bigint, 0::bigint, 0::bigint, 0::bigint, amount_cents
    FROM {schema}.restatements WHERE {cm[customer_id, posting_month]}
), cm AS (
    SELECT customer_id, month, ledger_sum(usage_units) AS usage_units, ledger_sum(metered_cents) AS metered_cents,
           sum(invoiced)::bigint AS invoiced, ledger_sum(credits) AS credits,
           sum(late_adjustment)::bigint AS late_adjustment, sum(restatement)::bigint AS restatement
    FROM part
    GROUP BY customer_id, month
), expected AS (
    SELECT c.*, a.segment, a.owner, a.plan, a.region, a.calculation,
           CASE WHEN a.is_split AND a.plan_rule = 'daily_prorated'   -- priced day by day
                THEN b.amount_cents + coalesce(c.metered_cents, 0)
                WHEN a.plan IS NOT NULL
                THEN coalesce(f.base_fee_cents, 0) + coalesce(c.metered_cents, 0) END AS expected_cents
    FROM cm c
    LEFT JOIN {schema}.customer_month_attrs a ON a.customer_id = c.customer_id AND a.month = c.month
    LEFT JOIN {schema}.plan_month_fee f ON f.plan = a.plan AND f.month = c.month
    LEFT JOIN {schema}.customer_month_priced b ON b.customer_id = c.customer_id AND b.month = c.month AND b.meter = ''
)
SELECT customer_id, month, segment, owner, plan, region, usage_units, expected_cents, invoiced, credits,
       late_adjustment, restatement, invoiced - credits + late_adjustment + restatement, invoiced - expected_cents,
       calculation
FROM expected;
-- @index
ALTER TABLE {schema}.customer_month ADD PRIMARY KEY (customer_id, month);
-- @add_on_time
-- Fast path: on-time units added to open months (after customer_month_meter's @add_on_time): expected_cents moves
-- by the change of its meters' expected cents. A new row here has no invoice, credit, late or restatement posting
-- (it would exist already), hence no other customer_month_meter row of an open month: its meters are all in the
-- change.
MERGE INTO {schema}.customer_month c
USING (
    SELECT n.customer_id, n.month, n.units, n.metered_change, a.segment, a.owner, a.plan, a.region, a.calculation,
           CASE WHEN a.plan IS NOT NULL THEN coalesce(f.base_fee_cents, 0) + n.metered_change END AS new_expected_cents
    FROM (SELECT customer_id, month, ledger_sum(units) AS units,
                 sum(coalesce(expected_cents, 0) - coalesce(old_expected_cents, 0))::bigint AS metered_change
          FROM {stage}.customer_month_meter_change
          GROUP BY customer_id, month) n
    LEFT JOIN {schema}.customer_month_attrs a ON a.customer_id = n.customer_id AND a.month = n.month
    LEFT JOIN {schema}.plan_month_fee f ON f.plan = a.plan AND f.month = n.month
) x
   ON c.customer_id = x.customer_id AND c.month = x.month
  AND {batch_months[c.month]}
WHEN MATCHED THEN
    UPDATE SET usage_units = c.usage_units + x.units,
               expected_cents = c.expected_cents + x.metered_change,
               variance_cents = c.variance_cents - x.metered_change
WHEN NOT MATCHED THEN
    INSERT VALUES (x.customer_id, x.month, x.segment, x.owner, x.plan, x.region, x.units, x.new_expected_cents,
                   0, 0, 0, 0, 0, 0 - x.new_expected_cents, x.calculation);
