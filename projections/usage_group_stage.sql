-- grain: one row per source id x meter x month over the facts before the month's close;
--        key: (source, source_customer_id, meter, month_start)
-- facts read: usage_facts (through period_close, link_range)
-- Rebuild only, transient ({stage} = pg_temp): the one aggregation pass over usage_facts. A group whose every
-- event instant falls in one link range of the month's cutoff version is on time as a whole
-- (usage_group_resolved gets its customer); the facts of the other groups, and the facts after their month's
-- close, are resolved one by one (usage_fact_stage, usage_fact_resolved).
-- CREATE TABLE AS, not INSERT: only the former may run in parallel. The group key is the one that extended
-- statistics on usage_facts can estimate (ndistinct (source, source_customer_id, meter) and the expression
-- date_trunc('month', event_time AT TIME ZONE 'UTC')); {cutoff[t]} is c(month of t) written out as a CASE over
-- the closed months' bounds (no join, no second date_trunc per fact).
-- read model: stage
-- depends on: period_close, link_range
-- rebuild: create, fill
-- increment: none
-- @create
CREATE TABLE {stage}.usage_group_resolved (
    source             text NOT NULL,
    source_customer_id text NOT NULL,
    meter              text NOT NULL,
    month_start        timestamp NOT NULL,
    units              bigint NOT NULL,
    event_count        bigint NOT NULL,
    first_position     bigint NOT NULL,
    last_position      bigint NOT NULL,
    digest             bigint NOT NULL,
    day_mask           integer NOT NULL,
    first_usage_at     timestamptz,
    last_usage_at      timestamptz,
    cutoff             bigint NOT NULL,      -- c(m), or the largest bigint while the month is open
    customer_id        text                  -- null: not one customer for the whole group
);
-- @fill
-- Without extended statistics on usage_facts the planner takes the month expression for one group per fact and
-- sorts every fact; a hash aggregate is right (a few groups per source id). With them it also runs in parallel.
SET LOCAL enable_sort = off;
CREATE TABLE {stage}.usage_group_stage AS
SELECT u.source, u.source_customer_id, u.meter, date_trunc('month', u.event_time AT TIME ZONE 'UTC') AS month_start,
       ledger_sum(u.quantity) AS units, count(*) AS event_count,
       min(u.position) AS first_position, max(u.position) AS last_position,
       bit_xor(hashint8extended(u.position, u.quantity)) AS digest,
       min(u.event_time) AS min_event_time, max(u.event_time) AS max_event_time,
       bit_or(1 << (date_part('day', u.event_time AT TIME ZONE 'UTC')::int - 1)) FILTER (WHERE u.quantity > 0) AS day_mask,
       min(u.event_time) FILTER (WHERE u.quantity > 0) AS first_usage_at,
       max(u.event_time) FILTER (WHERE u.quantity > 0) AS last_usage_at
FROM usage_facts u
WHERE u.position <= {head} AND u.position < {cutoff[u.event_time]}
GROUP BY 1, 2, 3, 4;
ANALYZE {stage}.usage_group_stage;
INSERT INTO {stage}.usage_group_resolved
SELECT g.source, g.source_customer_id, g.meter, g.month_start, g.units, g.event_count,
       g.first_position, g.last_position, g.digest, coalesce(g.day_mask, 0), g.first_usage_at, g.last_usage_at,
       coalesce(c.close_position, 9223372036854775807), r.customer_id
FROM {stage}.usage_group_stage g
LEFT JOIN {schema}.period_close c ON c.month_start = g.month_start
LEFT JOIN {schema}.link_range r
       ON r.source = g.source AND r.source_customer_id = g.source_customer_id
      AND r.known_after < coalesce(c.close_position, 9223372036854775807)
      AND coalesce(c.close_position, 9223372036854775807) <= r.known_through
      AND r.valid_from <= g.min_event_time AND g.max_event_time < r.valid_to;
RESET enable_sort;
