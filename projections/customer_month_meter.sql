-- grain: one row per customer x month x meter; key: (customer_id, month, meter)
-- facts read: usage_facts (through usage_on_time, usage_late), invoice_line_facts (through invoice_meter),
--             attribute_facts (through customer_month_attrs), price_facts (through plan_month_meter)
-- SPEC §4.3: a row for each (customer, month, meter) with on-time usage facts, attributed late facts of that
-- original month, or invoice usage lines. included_units / overage_units are empty where the plan's price does
-- not list the meter; expected_cents is empty without a plan (0 for an unpriced meter). Priced at the month's
-- pricing point (SPEC §4.0): a customer-month priced day by day takes its lines from customer_month_priced.
-- read model: finance
-- depends on: billing_rules, customer_month_attrs, customer_month_priced, invoice_meter, plan_month_meter, usage_late, usage_on_time
-- rebuild: fill, analyze
-- increment: refill as difference (delete, fill, apply)
-- increment on: every run
-- recomputed whole on: calculation_promoted_facts
-- added in place: add_on_time
-- @create
CREATE TABLE {schema}.customer_month_meter (
    customer_id    text NOT NULL,
    month          text NOT NULL,
    meter          text NOT NULL,
    on_time_units  bigint NOT NULL,
    late_units     bigint NOT NULL,
    included_units bigint,
    overage_units  bigint,
    expected_cents bigint,
    billed_units   bigint NOT NULL,
    billed_cents   bigint NOT NULL,
    on_time_facts  bigint NOT NULL,           -- not exported: whether on-time facts exist (unpriced_meter)
    unpriced_units bigint NOT NULL,           -- not exported: on-time units no price of the month's plans lists
    is_unpriced    boolean NOT NULL           -- not exported: an unpriced_meter exception (SPEC §5)
) WITH (fillfactor = 85);  -- room for in-place (HOT) updates by the additive incremental path
-- @delete
DELETE FROM {schema}.customer_month_meter WHERE {cm[customer_id, month]};
-- @fill
INSERT INTO {schema}.customer_month_meter
WITH part AS (
    SELECT customer_id, month, meter, units AS on_time_units, 0::bigint AS late_units, 0::bigint AS billed_units,
           0::bigint AS billed_cents, event_count AS on_time_facts
    FROM {schema}.usage_on_time WHERE {cm[customer_id, month]}
    UNION ALL
    SELECT customer_id, month, meter, 0::bigint, ledger_sum(quantity), 0::bigint, 0::bigint, 0::bigint
    FROM {schema}.usage_late WHERE customer_id IS NOT NULL AND {cm[customer_id, month]}
    GROUP BY customer_id, month, meter
    UNION ALL
    SELECT customer_id, period, meter, 0::bigint, 0::bigint, billed_units, billed_cents, 0::bigint
    FROM {schema}.invoice_meter WHERE customer_id IS NOT NULL AND {cm[customer_id, period]}
), cmm AS (
    SELECT customer_id, month, meter, ledger_sum(on_time_units) AS on_time_units,
           ledger_sum(late_units) AS late_units, ledger_sum(billed_units) AS billed_units,
           sum(billed_cents)::bigint AS billed_cents, ledger_sum(on_time_facts) AS on_time_facts
    FROM part
    GROUP BY customer_id, month, meter
)
SELECT c.customer_id, c.month, c.meter, c.on_time_units, c.late_units,
       CASE WHEN d.is_daily THEN d.included_units ELSE p.included_units END,
       CASE WHEN d.is_daily THEN d.overage_units
            ELSE {schema}.line_overage_units(c.on_time_units, p.meter IS NOT NULL, p.included_units) END,
       CASE WHEN d.is_daily THEN CASE WHEN d.has_plan THEN d.amount_cents END
            ELSE {schema}.line_expected_cents(
                {schema}.line_overage_units(c.on_time_units, p.meter IS NOT NULL, p.included_units),
                p.meter IS NOT NULL, p.unit_price_cents, a.plan IS NOT NULL) END,
       c.billed_units, c.billed_cents, c.on_time_facts,
       CASE WHEN d.is_daily THEN d.unpriced_units
            WHEN a.plan IS NOT NULL AND p.meter IS NULL THEN c.on_time_units ELSE 0 END,
       CASE WHEN d.is_daily THEN d.unpriced_units > 0
            ELSE c.on_time_facts > 0 AND a.plan IS NOT NULL AND p.meter IS NULL END
FROM cmm c
LEFT JOIN {schema}.customer_month_attrs a ON a.customer_id = c.customer_id AND a.month = c.month
LEFT JOIN {schema}.plan_month_meter p ON p.plan = a.plan AND p.month = c.month AND p.meter = c.meter
LEFT JOIN LATERAL (    -- a customer-month priced day by day: its line of this meter, if any
    SELECT true AS is_daily, EXISTS (SELECT 1 FROM {schema}.customer_month_priced b
                                     WHERE b.customer_id = c.customer_id AND b.month = c.month AND b.meter = '') AS has_plan,
           coalesce(l.amount_cents, 0) AS amount_cents, l.included_units, l.overage_units,
           coalesce(l.unpriced_units, 0) AS unpriced_units
    FROM (SELECT 1) one
    LEFT JOIN {schema}.customer_month_priced l ON l.customer_id = c.customer_id AND l.month = c.month AND l.meter = c.meter
    WHERE a.is_split AND a.plan_rule = 'daily_prorated'
) d ON true;
-- @index
ALTER TABLE {schema}.customer_month_meter ADD PRIMARY KEY (customer_id, month, meter);
-- @apply
-- An increment's scoped refill, applied as a difference: the engine first writes @fill's rows for the scope into
-- {stage}.customer_month_meter_new; here the keys gone are deleted, the rows that changed updated in place and the
-- new keys inserted. Deleting and re-inserting every scoped row cost about 12 us a row (the key's uniqueness check
-- visits the deleted versions) for rows that mostly had not changed: 0.6 s of a 10k-fact late increment at 10M.
ANALYZE {stage}.customer_month_meter_new;
DELETE FROM {schema}.customer_month_meter c
WHERE {cm[c.customer_id, c.month]}
  AND NOT EXISTS (SELECT 1 FROM {stage}.customer_month_meter_new n
                  WHERE n.customer_id = c.customer_id AND n.month = c.month AND n.meter = c.meter);
MERGE INTO {schema}.customer_month_meter c
USING {stage}.customer_month_meter_new n
   ON c.customer_id = n.customer_id AND c.month = n.month AND c.meter = n.meter
WHEN MATCHED AND (c.on_time_units, c.late_units, c.included_units, c.overage_units, c.expected_cents,
                  c.billed_units, c.billed_cents, c.on_time_facts, c.unpriced_units, c.is_unpriced)
                 IS DISTINCT FROM (n.on_time_units, n.late_units, n.included_units, n.overage_units,
                                   n.expected_cents, n.billed_units, n.billed_cents, n.on_time_facts,
                                   n.unpriced_units, n.is_unpriced) THEN
    UPDATE SET on_time_units = n.on_time_units, late_units = n.late_units, included_units = n.included_units,
               overage_units = n.overage_units, expected_cents = n.expected_cents, billed_units = n.billed_units,
               billed_cents = n.billed_cents, on_time_facts = n.on_time_facts, unpriced_units = n.unpriced_units,
               is_unpriced = n.is_unpriced
WHEN NOT MATCHED THEN
    INSERT VALUES (n.customer_id, n.month, n.meter, n.on_time_units, n.late_units, n.included_units,
                   n.overage_units, n.expected_cents, n.billed_units, n.billed_cents, n.on_time_facts,
                   n.unpriced_units, n.is_unpriced);
-- @add_on_time
-- Fast path: on-time units added to open months; plans and prices are unchanged, so only the rows' overage moves.
-- (A customer-month priced day by day is written here as if it had one plan, then refilled by scope in the same
-- run: batch.py, scope_daily_priced.)
-- The rows it reaches, old and new values side by side, are kept for customer_month's and exceptions' fast paths
-- ({stage}.customer_month_meter_change): neither reads this table again.
CREATE TABLE {stage}.customer_month_meter_change AS
SELECT d.customer_id, d.month, d.meter, d.units, c.customer_id IS NOT NULL AS is_existing,
       coalesce(c.on_time_units, 0) + d.units AS on_time_units, coalesce(c.on_time_facts, 0) + d.facts AS on_time_facts,
       coalesce(c.billed_units, 0) AS billed_units,
       CASE WHEN c.customer_id IS NOT NULL THEN c.included_units ELSE p.included_units END AS included_units,
       {schema}.line_overage_units(coalesce(c.on_time_units, 0) + d.units, p.meter IS NOT NULL, p.included_units)
           AS overage_units,
       {schema}.line_expected_cents(
           {schema}.line_overage_units(coalesce(c.on_time_units, 0) + d.units, p.meter IS NOT NULL, p.included_units),
           p.meter IS NOT NULL, p.unit_price_cents, a.plan IS NOT NULL) AS expected_cents,
       c.expected_cents AS old_expected_cents, a.plan IS NOT NULL AS has_plan,
       CASE WHEN a.plan IS NOT NULL AND p.meter IS NULL THEN coalesce(c.on_time_units, 0) + d.units ELSE 0 END
           AS unpriced_units,
       a.plan IS NOT NULL AND p.meter IS NULL AS is_unpriced
FROM {stage}.on_time_delta d
LEFT JOIN {schema}.customer_month_attrs a ON a.customer_id = d.customer_id AND a.month = d.month
LEFT JOIN {schema}.plan_month_meter p ON p.plan = a.plan AND p.month = d.month AND p.meter = d.meter
LEFT JOIN {schema}.customer_month_meter c
       ON c.customer_id = d.customer_id AND c.month = d.month AND c.meter = d.meter
      AND {batch_months[c.month]};
MERGE INTO {schema}.customer_month_meter c
USING {stage}.customer_month_meter_change n
   ON c.customer_id = n.customer_id AND c.month = n.month AND c.meter = n.meter
  AND {batch_months[c.month]}
WHEN MATCHED THEN
    UPDATE SET on_time_units = n.on_time_units, on_time_facts = n.on_time_facts, overage_units = n.overage_units,
               expected_cents = n.expected_cents, unpriced_units = n.unpriced_units,
               is_unpriced = n.is_unpriced
WHEN NOT MATCHED THEN
    INSERT VALUES (n.customer_id, n.month, n.meter, n.on_time_units, 0, n.included_units, n.overage_units,
                   n.expected_cents, 0, 0, n.on_time_facts, n.unpriced_units, n.is_unpriced);
