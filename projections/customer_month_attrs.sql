-- grain: one row per customer x month that a read model reports; key: (customer_id, month)
-- facts read: attribute_facts (through dim_customer), calculation_promoted_facts (through calc_in_force); the keys
--             come from usage_on_time, usage_late, invoice_resolved, credit_facts and restatements
-- SPEC §3.3: a customer-month takes the version in effect at the month's first instant; where none is, the first
-- version that starts within the month; else empty attributes. SPEC §4.0: as known at the month's pricing point
-- priced_at = E(m) (its close position - 1 once closed, the head while open), and so is its calculation.
-- is_split: the month is in split_month (an attribute fact of the customer takes effect strictly inside it), so its
-- days may have more than one plan (under daily_prorated, such a month is priced day by day: customer_month_priced).
-- read model: finance
-- depends on: attribute_key, calc_in_force, dim_customer, invoice_resolved, period_close, restatements, split_month, usage_late, usage_on_time
-- rebuild: fill, analyze
-- increment: refill scope (delete, fill)
-- increment on: every run
-- recomputed whole on: calculation_promoted_facts
-- added in place: fill
-- @create
CREATE TABLE {schema}.customer_month_attrs (
    customer_id text NOT NULL,
    month       text NOT NULL,
    name        text,
    segment     text,
    owner       text,
    plan        text,
    region      text,
    priced_at   bigint,                    -- E(m) of a closed month; null while open (the head)
    calculation text NOT NULL,
    plan_rule   text NOT NULL,
    is_split    boolean NOT NULL
);
-- @delete
DELETE FROM {schema}.customer_month_attrs WHERE {cm[customer_id, month]};
-- @fill
DROP TABLE IF EXISTS {stage}.cm_attr_key, {stage}.version_pair;
CREATE TABLE {stage}.cm_attr_key AS
WITH credit AS (
    SELECT customer_id, to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month
    FROM credit_facts
    WHERE position <= {head}
), cm AS (
    SELECT customer_id, month FROM {schema}.usage_on_time WHERE {cm[customer_id, month]}
    UNION
    SELECT customer_id, month FROM {schema}.usage_late WHERE customer_id IS NOT NULL AND {cm[customer_id, month]}
    UNION
    SELECT customer_id, posting_month FROM {schema}.usage_late
    WHERE customer_id IS NOT NULL AND {cm[customer_id, posting_month]}
    UNION
    SELECT customer_id, period FROM {schema}.invoice_resolved WHERE customer_id IS NOT NULL AND {cm[customer_id, period]}
    UNION
    SELECT customer_id, month FROM credit WHERE {cm[customer_id, month]}
    UNION
    SELECT customer_id, posting_month FROM {schema}.restatements WHERE {cm[customer_id, posting_month]}
), keyed AS (
    SELECT cm.customer_id, cm.month, pc.close_position - 1 AS closed_at, coalesce(pc.close_position - 1, {head}) AS priced_at
    FROM cm LEFT JOIN {schema}.period_close pc ON pc.month = cm.month
), attr AS (    -- each customer's latest attribute fact
    SELECT customer_id, max(position) AS last_position
    FROM {schema}.attribute_key
    WHERE position <= {head}
    GROUP BY customer_id
)
SELECT k.customer_id, k.month, k.closed_at, k.priced_at, coalesce(a.last_position > k.priced_at, false) AS is_asof,
       s.customer_id IS NOT NULL AS is_split, c.name AS calculation, c.plan_rule
FROM keyed k
LEFT JOIN attr a ON a.customer_id = k.customer_id
LEFT JOIN {schema}.split_month s ON s.customer_id = k.customer_id AND s.month = k.month
JOIN {schema}.calc_in_force c ON k.priced_at >= c.from_position AND k.priced_at < c.through_position;
-- attributes as known at a closed month's pricing point, for the customers with attribute facts since then
CREATE TABLE {stage}.version_pair AS SELECT DISTINCT customer_id, priced_at AS q FROM {stage}.cm_attr_key WHERE is_asof;
INSERT INTO {schema}.customer_month_attrs
SELECT DISTINCT ON (k.customer_id, k.month)
       k.customer_id, k.month, d.name, d.segment, d.owner, d.plan, d.region, k.closed_at, k.calculation, k.plan_rule,
       k.is_split
FROM {stage}.cm_attr_key k
LEFT JOIN {schema}.dim_customer d
       ON d.customer_id = k.customer_id
      AND d.valid_from < ((k.month || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC'
      AND (d.valid_to IS NULL OR d.valid_to > (k.month || '-01')::timestamp AT TIME ZONE 'UTC')
WHERE NOT k.is_asof
ORDER BY k.customer_id, k.month, d.valid_from;
INSERT INTO {schema}.customer_month_attrs
SELECT DISTINCT ON (k.customer_id, k.month)
       k.customer_id, k.month, d.name, d.segment, d.owner, d.plan, d.region, k.closed_at, k.calculation, k.plan_rule,
       k.is_split
FROM {stage}.cm_attr_key k
LEFT JOIN (
-- @include dim_customer.versions
) d
       ON d.customer_id = k.customer_id AND d.q = k.priced_at
      AND d.valid_from < ((k.month || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC'
      AND (d.valid_to IS NULL OR d.valid_to > (k.month || '-01')::timestamp AT TIME ZONE 'UTC')
WHERE k.is_asof
ORDER BY k.customer_id, k.month, d.valid_from;
-- @index
ALTER TABLE {schema}.customer_month_attrs ADD PRIMARY KEY (customer_id, month);
