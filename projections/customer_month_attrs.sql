-- grain: one row per customer x month that a read model reports; key: (customer_id, month)
-- facts read: attribute_facts (through dim_customer); the keys come from usage_on_time, usage_late,
--             invoice_resolved and credit_facts
-- SPEC §3.3: a customer-month takes the version in effect at the month's first instant; where none is, the first
-- version that starts within the month; else empty attributes.
-- @create
CREATE TABLE {schema}.customer_month_attrs (
    customer_id text NOT NULL,
    month       text NOT NULL,
    name        text,
    segment     text,
    owner       text,
    plan        text,
    region      text
);
-- @delete
DELETE FROM {schema}.customer_month_attrs WHERE {cm[customer_id, month]};
-- @fill
INSERT INTO {schema}.customer_month_attrs
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
)
SELECT DISTINCT ON (cm.customer_id, cm.month)
       cm.customer_id, cm.month, d.name, d.segment, d.owner, d.plan, d.region
FROM cm
LEFT JOIN {schema}.dim_customer d
       ON d.customer_id = cm.customer_id
      AND d.valid_from < ((cm.month || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC'
      AND (d.valid_to IS NULL OR d.valid_to > (cm.month || '-01')::timestamp AT TIME ZONE 'UTC')
ORDER BY cm.customer_id, cm.month, d.valid_from;
-- @index
ALTER TABLE {schema}.customer_month_attrs ADD PRIMARY KEY (customer_id, month);
