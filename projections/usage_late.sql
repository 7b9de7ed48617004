-- grain: one row per usage fact that is not on time (late, or not yet attributed); key: position
-- facts read: usage_facts (through usage_fact_resolved)
-- customer_id, attribution_position and posting_month are null while the fact is unattributed.
-- read model: finance
-- depends on: usage_fact_resolved
-- rebuild: fill, analyze
-- increment: refill scope (delete, fill, touched)
-- increment on: usage_facts, identity_link_facts
-- @create
CREATE TABLE {schema}.usage_late (
    position             bigint NOT NULL,
    source               text NOT NULL,
    source_customer_id   text NOT NULL,
    meter                text NOT NULL,
    quantity             bigint NOT NULL,
    event_time           timestamptz NOT NULL,
    month                text NOT NULL,
    customer_id          text,
    attribution_position bigint,
    posting_month        text
);
-- @delete
WITH gone AS (
    DELETE FROM {schema}.usage_late t
    USING {stage}.relink_source r
    WHERE t.source = r.source AND t.source_customer_id = r.source_customer_id
      AND t.month >= to_char(r.since AT TIME ZONE 'UTC', 'YYYY-MM')  -- earlier months resolve as before
    RETURNING t.customer_id, t.month, t.posting_month
)
INSERT INTO {stage}.scope_cm
SELECT customer_id, month FROM gone WHERE customer_id IS NOT NULL
UNION SELECT customer_id, posting_month FROM gone WHERE customer_id IS NOT NULL;
-- @fill
INSERT INTO {schema}.usage_late
SELECT position, source, source_customer_id, meter, quantity, event_time, month, customer_id,
       attribution_position, posting_month
FROM {stage}.usage_fact_resolved
WHERE NOT is_on_time;
-- @touched
INSERT INTO {stage}.scope_cm
SELECT customer_id, month FROM {stage}.usage_fact_resolved WHERE NOT is_on_time AND customer_id IS NOT NULL
UNION SELECT customer_id, posting_month FROM {stage}.usage_fact_resolved WHERE NOT is_on_time AND customer_id IS NOT NULL;
INSERT INTO {stage}.scope_src
SELECT DISTINCT source, source_customer_id FROM {stage}.usage_fact_resolved;
-- @index
-- The scoped refills read a scope's late facts through these (by original month and by posting month, and the
-- unattributed ones by source id), not by scanning every late fact: a general increment's cost follows its
-- scope, not the store.
CREATE INDEX ON {schema}.usage_late (customer_id, month);
CREATE INDEX ON {schema}.usage_late (customer_id, posting_month);
CREATE INDEX ON {schema}.usage_late (source, source_customer_id) WHERE customer_id IS NULL;
