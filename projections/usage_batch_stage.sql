-- grain: one row per customer x month x meter x source id over the new usage facts (checkpoint, head];
--        key: (customer_id, month, meter, source, source_customer_id); customer_id null where a fact does not resolve
-- facts read: usage_facts (through link_range), identity_link_facts (through link_range)
-- Transient ({stage} = pg_temp), the fast incremental path: a batch of usage facts only, each resolved with every
-- link known now (the last link version, known_through = +inf) and aggregated straight away, without staging
-- fact by fact. A group with a customer and an open month is on time as a whole (SPEC §4.1: such a fact is on
-- time, its customer that resolution) and is added in place; @split removes the other groups, whose facts (late
-- ones, and ones that resolve nowhere) the engine resolves one by one (usage_fact_stage's @fill_incremental_rest,
-- whose conditions are the same, fact by fact).
-- read model: stage
-- depends on: period_close, link_range
-- rebuild: none
-- increment: none
-- @fill
CREATE TABLE {stage}.usage_batch_stage AS
SELECT customer_id, to_char(month_start, 'YYYY-MM') AS month, meter, source, source_customer_id, units,
       event_count, first_position, last_position, digest, day_mask, first_usage_at, last_usage_at
FROM (SELECT r.customer_id, date_trunc('month', f.event_time AT TIME ZONE 'UTC') AS month_start, f.meter, f.source,
             f.source_customer_id, ledger_sum(f.quantity) AS units, count(*) AS event_count,
             min(f.position) AS first_position, max(f.position) AS last_position,
             bit_xor(hashint8extended(f.position, f.quantity)) AS digest,
             coalesce(bit_or(1 << (date_part('day', f.event_time AT TIME ZONE 'UTC')::int - 1)) FILTER (WHERE f.quantity > 0), 0) AS day_mask,
             min(f.event_time) FILTER (WHERE f.quantity > 0) AS first_usage_at,
             max(f.event_time) FILTER (WHERE f.quantity > 0) AS last_usage_at
      FROM usage_facts f
      LEFT JOIN {schema}.link_range r
             ON r.source = f.source AND r.source_customer_id = f.source_customer_id
            AND r.known_through = 9223372036854775807
            AND r.valid_from <= f.event_time AND f.event_time < r.valid_to
      WHERE f.position > {checkpoint} AND f.position <= {head}
      GROUP BY 1, 2, 3, 4, 5) g;
-- @split
-- Leaves the groups to add in place; returns the number and the digest of the facts the removed groups hold.
WITH rest AS (
    DELETE FROM {stage}.usage_batch_stage
    WHERE customer_id IS NULL OR month IN (SELECT month FROM {schema}.period_close)
    RETURNING event_count, digest
)
SELECT coalesce(sum(event_count), 0)::bigint, coalesce(bit_xor(digest), 0) FROM rest;
