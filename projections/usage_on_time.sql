-- grain: one row per customer x month x meter x source id over the on-time usage facts;
--        key: (customer_id, month, meter, source, source_customer_id)
-- facts read: usage_facts (through usage_group_resolved, usage_fact_resolved)
-- day_mask (bit d-1: day d of the month had a fact with quantity > 0) and first/last_usage_at (the first/last
-- event_time of such a fact) are what adoption reads; they are not exported.
-- A closed month's rows never change after its close except when a new identity link re-resolves a source id
-- whose facts were not on time (its on-time facts keep their customer: links after c(m) are not used).
-- read model: finance
-- depends on: usage_group_stage, usage_fact_resolved
-- rebuild: fill_rebuild, analyze
-- increment: refill scope (delete, merge, touched)
-- increment on: usage_facts, identity_link_facts
-- added in place: delta, merge_batch
-- @create
CREATE TABLE {schema}.usage_on_time (
    customer_id        text NOT NULL,
    month              text NOT NULL,
    meter              text NOT NULL,
    source             text NOT NULL,
    source_customer_id text NOT NULL,
    units              bigint NOT NULL,
    event_count        bigint NOT NULL,
    first_position     bigint NOT NULL,
    last_position      bigint NOT NULL,
    digest             bigint NOT NULL,  -- bit_xor of hashint8extended(position, quantity): trace checks its facts
    day_mask           integer NOT NULL,
    first_usage_at     timestamptz,
    last_usage_at      timestamptz
) WITH (fillfactor = 85);  -- room for in-place (HOT) updates by the additive incremental path
-- @fill_rebuild
INSERT INTO {schema}.usage_on_time
SELECT customer_id, to_char(month_start, 'YYYY-MM'), meter, source, source_customer_id, units, event_count,
       first_position, last_position, digest, day_mask, first_usage_at, last_usage_at
FROM {stage}.usage_group_resolved
WHERE customer_id IS NOT NULL;
INSERT INTO {schema}.usage_on_time
SELECT customer_id, month, meter, source, source_customer_id, ledger_sum(quantity), count(*), min(position), max(position),
       bit_xor(hashint8extended(position, quantity)), coalesce(bit_or(1 << (date_part('day', event_time AT TIME ZONE 'UTC')::int - 1)) FILTER (WHERE quantity > 0), 0),
       min(event_time) FILTER (WHERE quantity > 0), max(event_time) FILTER (WHERE quantity > 0)
FROM {stage}.usage_fact_resolved
WHERE is_on_time
GROUP BY customer_id, month, meter, source, source_customer_id;
-- @delete
WITH gone AS (
    DELETE FROM {schema}.usage_on_time t
    USING {stage}.relink_source r
    WHERE t.source = r.source AND t.source_customer_id = r.source_customer_id
      AND t.month >= to_char(r.since AT TIME ZONE 'UTC', 'YYYY-MM')  -- earlier months resolve as before
    RETURNING t.customer_id, t.month
), cm AS MATERIALIZED (
    SELECT DISTINCT customer_id, month FROM gone
), scoped AS (
    INSERT INTO {stage}.scope_cm SELECT customer_id, month FROM cm
)
INSERT INTO {schema}.adoption_pending SELECT customer_id, month FROM cm;
-- @merge
WITH delta AS (
    SELECT customer_id, month, meter, source, source_customer_id, ledger_sum(quantity) AS units, count(*) AS event_count,
           min(position) AS first_position, max(position) AS last_position,
           bit_xor(hashint8extended(position, quantity)) AS digest, coalesce(bit_or(1 << (date_part('day', event_time AT TIME ZONE 'UTC')::int - 1)) FILTER (WHERE quantity > 0), 0) AS day_mask,
           min(event_time) FILTER (WHERE quantity > 0) AS first_usage_at,
           max(event_time) FILTER (WHERE quantity > 0) AS last_usage_at
    FROM {stage}.usage_fact_resolved
    WHERE is_on_time
    GROUP BY customer_id, month, meter, source, source_customer_id
), added AS (
    UPDATE {schema}.usage_on_time t
    SET units = t.units + d.units, event_count = t.event_count + d.event_count,
        first_position = least(t.first_position, d.first_position),
        last_position = greatest(t.last_position, d.last_position), digest = t.digest # d.digest,
        day_mask = t.day_mask | d.day_mask, first_usage_at = least(t.first_usage_at, d.first_usage_at),
        last_usage_at = greatest(t.last_usage_at, d.last_usage_at)
    FROM delta d
    WHERE t.customer_id = d.customer_id AND t.month = d.month AND t.meter = d.meter
      AND t.source = d.source AND t.source_customer_id = d.source_customer_id
    RETURNING t.customer_id, t.month, t.meter, t.source, t.source_customer_id
)
INSERT INTO {schema}.usage_on_time
SELECT d.* FROM delta d
WHERE NOT EXISTS (SELECT 1 FROM added a
                  WHERE a.customer_id = d.customer_id AND a.month = d.month AND a.meter = d.meter
                    AND a.source = d.source AND a.source_customer_id = d.source_customer_id);
-- @touched
WITH cm AS MATERIALIZED (
    SELECT DISTINCT customer_id, month FROM {stage}.usage_fact_resolved WHERE is_on_time
), scoped AS (
    INSERT INTO {stage}.scope_cm SELECT customer_id, month FROM cm
)
INSERT INTO {schema}.adoption_pending SELECT customer_id, month FROM cm;
-- @merge_batch
-- The fast incremental path: the batch's groups (usage_batch_stage, all on time in open months) added in place.
-- Only the rows of the batch's months are matched (filtered as the table is read): the cost follows the open
-- months, not the history.
MERGE INTO {schema}.usage_on_time t
USING {stage}.usage_batch_stage d
   ON t.customer_id = d.customer_id AND t.month = d.month AND t.meter = d.meter
  AND t.source = d.source AND t.source_customer_id = d.source_customer_id
  AND {batch_months[t.month]}
WHEN MATCHED THEN
    UPDATE SET units = t.units + d.units, event_count = t.event_count + d.event_count,
               first_position = least(t.first_position, d.first_position),
               last_position = greatest(t.last_position, d.last_position), digest = t.digest # d.digest,
               day_mask = t.day_mask | d.day_mask, first_usage_at = least(t.first_usage_at, d.first_usage_at),
               last_usage_at = greatest(t.last_usage_at, d.last_usage_at)
WHEN NOT MATCHED THEN
    INSERT VALUES (d.customer_id, d.month, d.meter, d.source, d.source_customer_id, d.units, d.event_count,
                   d.first_position, d.last_position, d.digest, d.day_mask, d.first_usage_at, d.last_usage_at);
-- @delta
-- The fast incremental path: the units the batch adds per customer x month x meter, for the additive sections
-- (@add_on_time) of the customer-month read models; the customer-months new to customer_month_attrs; and every
-- customer-month it reaches, for adoption (its own checkpoint: it reads adoption_pending).
CREATE TABLE {stage}.on_time_delta AS
SELECT customer_id, month, meter, ledger_sum(units) AS units, ledger_sum(event_count) AS facts
FROM {stage}.usage_batch_stage
GROUP BY customer_id, month, meter;
ANALYZE {stage}.on_time_delta;
INSERT INTO {stage}.scope_cm
SELECT DISTINCT d.customer_id, d.month FROM {stage}.on_time_delta d
WHERE NOT EXISTS (SELECT 1 FROM {schema}.customer_month_attrs a WHERE a.customer_id = d.customer_id AND a.month = d.month);
INSERT INTO {schema}.adoption_pending SELECT DISTINCT customer_id, month FROM {stage}.on_time_delta;
-- @index
-- The key, enforced: no increment can write a second row for one. Trace and adoption read a customer-month's rows
-- through it.
CREATE UNIQUE INDEX ON {schema}.usage_on_time (customer_id, month, meter, source, source_customer_id);
