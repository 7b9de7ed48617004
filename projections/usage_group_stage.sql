-- grain: one row per source id x meter x month over the facts before the month's close, plus one row per fact
--        after it (late by position); key: (source, source_customer_id, meter, month_start, late_position)
-- facts read: usage_facts (through period_close, link_range)
-- Rebuild only, transient ({stage} = pg_temp): the one pass over usage_facts. Pre-close groups whose every
-- event instant falls in one link range of the month's cutoff version are on time as a whole (usage_group_resolved
-- gets their customer); the others, and every late-by-position fact, are resolved fact by fact
-- (usage_fact_stage / usage_fact_resolved).
-- @create
CREATE TABLE {stage}.usage_group_stage (
    source             text NOT NULL,
    source_customer_id text NOT NULL,
    meter              text NOT NULL,
    month_start        timestamp NOT NULL,
    late_position      bigint,               -- null: the group of facts before the close
    units              bigint NOT NULL,
    event_count        bigint NOT NULL,
    first_position     bigint NOT NULL,
    last_position      bigint NOT NULL,
    min_event_time     timestamptz NOT NULL,
    max_event_time     timestamptz NOT NULL
);
CREATE TABLE {stage}.usage_group_resolved (
    source             text NOT NULL,
    source_customer_id text NOT NULL,
    meter              text NOT NULL,
    month_start        timestamp NOT NULL,
    units              bigint NOT NULL,
    event_count        bigint NOT NULL,
    first_position     bigint NOT NULL,
    last_position      bigint NOT NULL,
    customer_id        text                  -- null: not one customer for the whole group
);
-- @fill
INSERT INTO {stage}.usage_group_stage
SELECT f.source, f.source_customer_id, f.meter, f.month_start,
       CASE WHEN f.position > c.close_position THEN f.position END,
       sum(f.quantity), count(*), min(f.position), max(f.position), min(f.event_time), max(f.event_time)
FROM (SELECT u.position, u.source, u.source_customer_id, u.meter, u.quantity, u.event_time,
             date_trunc('month', u.event_time AT TIME ZONE 'UTC') AS month_start
      FROM usage_facts u
      WHERE u.position <= {head}) f
LEFT JOIN {schema}.period_close c ON c.month_start = f.month_start
GROUP BY 1, 2, 3, 4, 5;
ANALYZE {stage}.usage_group_stage;
INSERT INTO {stage}.usage_group_resolved
SELECT g.source, g.source_customer_id, g.meter, g.month_start, g.units, g.event_count,
       g.first_position, g.last_position, r.customer_id
FROM {stage}.usage_group_stage g
LEFT JOIN {schema}.period_close c ON c.month_start = g.month_start
LEFT JOIN {schema}.link_range r
       ON r.source = g.source AND r.source_customer_id = g.source_customer_id
      AND r.known_after < coalesce(c.close_position, 9223372036854775807)
      AND coalesce(c.close_position, 9223372036854775807) <= r.known_through
      AND r.valid_from <= g.min_event_time AND g.max_event_time < r.valid_to
WHERE g.late_position IS NULL;
