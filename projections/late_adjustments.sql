-- grain: one row per customer x original_month x meter x posting_month; key: (customer_id, original_month, meter, posting_month)
-- facts read: usage_facts (through usage_late, usage_on_time), attribute_facts (through customer_month_attrs),
--             price_facts (through plan_month_meter)
-- SPEC §4.2: marginal pricing of late units with the plan of the ORIGINAL month:
--   amount = overage(m, U0 + L_through) - overage(m, U0 + L_before), 0 without a plan or for an unpriced meter.
-- first/last_position are the facts' attribution positions.
-- @create
CREATE TABLE {schema}.late_adjustments (
    customer_id    text NOT NULL,
    original_month text NOT NULL,
    meter          text NOT NULL,
    posting_month  text NOT NULL,
    units          bigint NOT NULL,
    amount_cents   bigint NOT NULL,
    event_count    bigint NOT NULL,
    first_position bigint NOT NULL,
    last_position  bigint NOT NULL
);
-- @delete
WITH gone AS (
    DELETE FROM {schema}.late_adjustments WHERE {cm[customer_id, original_month]}
    RETURNING customer_id, posting_month
)
INSERT INTO {stage}.scope_cm_posting SELECT DISTINCT customer_id, posting_month FROM gone;
-- @fill
INSERT INTO {schema}.late_adjustments
WITH late AS (      -- pre-aggregated: one row per output group
    SELECT customer_id, month AS original_month, meter, posting_month, sum(quantity)::bigint AS units,
           count(*) AS event_count, min(attribution_position) AS first_position,
           max(attribution_position) AS last_position
    FROM {schema}.usage_late
    WHERE customer_id IS NOT NULL AND {cm[customer_id, month]}
    GROUP BY customer_id, month, meter, posting_month
), on_time AS (     -- U0, pre-aggregated over source ids
    SELECT customer_id, month, meter, sum(units)::bigint AS units
    FROM {schema}.usage_on_time
    WHERE {cm[customer_id, month]}
    GROUP BY customer_id, month, meter
), running AS (
    SELECT l.*, coalesce(o.units, 0) AS u0,
           sum(l.units) OVER (PARTITION BY l.customer_id, l.original_month, l.meter
                              ORDER BY l.posting_month)::bigint AS l_through
    FROM late l
    LEFT JOIN on_time o
           ON o.customer_id = l.customer_id AND o.month = l.original_month AND o.meter = l.meter
)
SELECT r.customer_id, r.original_month, r.meter, r.posting_month, r.units,
       CASE WHEN p.meter IS NULL THEN 0   -- no plan, or a meter its price does not list
            ELSE (greatest(0, r.u0 + r.l_through - p.included_units)
                  - greatest(0, r.u0 + r.l_through - r.units - p.included_units)) * p.unit_price_cents END,
       r.event_count, r.first_position, r.last_position
FROM running r
LEFT JOIN {schema}.customer_month_attrs a ON a.customer_id = r.customer_id AND a.month = r.original_month
LEFT JOIN {schema}.plan_month_meter p ON p.plan = a.plan AND p.month = r.original_month AND p.meter = r.meter;
-- @touched
INSERT INTO {stage}.scope_cm_posting
SELECT DISTINCT customer_id, posting_month FROM {schema}.late_adjustments WHERE {cm[customer_id, original_month]};
-- @index
ALTER TABLE {schema}.late_adjustments ADD PRIMARY KEY (customer_id, original_month, meter, posting_month);
CREATE INDEX ON {schema}.late_adjustments (customer_id, posting_month);  -- the scoped refills' posting months
