-- grain: one row per source id x meter x UTC day x customer resolved now x lateness;
--        key: (source, source_customer_id, meter, day, customer_id, is_late)
-- facts read: usage_facts, identity_link_facts (through link_range), period_close_facts (through {cutoff})
-- The day-grain pre-aggregate of the risk views (adoption, anomalies); internal, not exported. Every usage fact
-- counts, late ones included, on the UTC day of its event_time, for the customer its source id resolves to at
-- event_time with EVERY link known now (SPEC §3.2 over link_range's latest version; not the close-time rule of
-- §4.1); customer_id is null while the source id resolves nowhere at that instant. is_late (position > c(month))
-- keeps the facts after their month's close apart, so a closed month's on-time usage can be read off the others.
-- first/last_event_at span all of a row's facts (whether a link boundary splits the row), first/last_usage_at only
-- those with quantity > 0; first/last_position bound the facts' positions (tracing).
-- Incremental (merge): the new facts are resolved one by one and added. A source id with a new link has its rows
-- resolved again: a row whole when no valid_from of its latest link version falls in (first_event_at,
-- last_event_at]; the (source id, meter, day) of a row that one splits, fact by fact (one pass over usage_facts,
-- restricted to those source ids, only when there is one). The (customer, meter, day) keys whose units or fact
-- count change go to {stage}.risk_changed, and each changed (customer, meter)'s first day with usage before the run
-- to {stage}.risk_first_before, for adoption's and anomalies' merges.
-- @create
CREATE TABLE {schema}.usage_daily (
    source             text NOT NULL,
    source_customer_id text NOT NULL,
    meter              text NOT NULL,
    day                date NOT NULL,              -- UTC
    customer_id        text,                       -- null: unattributed with every link known now
    is_late            boolean NOT NULL,           -- position > c(month of the day): late by position (SPEC §4.1)
    units              bigint NOT NULL,
    fact_count         bigint NOT NULL,
    first_event_at     timestamptz NOT NULL,
    last_event_at      timestamptz NOT NULL,
    first_usage_at     timestamptz,                -- null: every fact of the row has quantity 0
    last_usage_at      timestamptz,
    first_position     bigint NOT NULL,
    last_position      bigint NOT NULL
);
-- @fill
SET LOCAL enable_sort = off;   -- a hash aggregate: sorting every fact on six keys costs several times more
INSERT INTO {schema}.usage_daily   -- the one pass over usage_facts, each fact resolved on its own
SELECT f.source, f.source_customer_id, f.meter, (f.event_time AT TIME ZONE 'UTC')::date, r.customer_id,
       f.position > {cutoff[f.event_time]},
       sum(f.quantity)::bigint, count(*), min(f.event_time), max(f.event_time),
       min(f.event_time) FILTER (WHERE f.quantity > 0), max(f.event_time) FILTER (WHERE f.quantity > 0),
       min(f.position), max(f.position)
FROM usage_facts f
LEFT JOIN {schema}.link_range r
       ON r.source = f.source AND r.source_customer_id = f.source_customer_id
      AND r.known_through = 9223372036854775807
      AND r.valid_from <= f.event_time AND f.event_time < r.valid_to
WHERE f.position <= {head}
GROUP BY 1, 2, 3, 4, 5, 6;
RESET enable_sort;
ANALYZE {schema}.usage_daily;
-- @merge
DROP TABLE IF EXISTS {stage}.risk_relink, {stage}.risk_daily_old, {stage}.risk_relink_group,
                     {stage}.risk_daily_new, {stage}.risk_daily_add, {stage}.risk_changed, {stage}.risk_first_before;
CREATE TEMP TABLE {stage}.risk_relink ON COMMIT DROP AS
SELECT DISTINCT source, source_customer_id
FROM identity_link_facts
WHERE position > {checkpoint} AND position <= {head};
ANALYZE {stage}.risk_relink;
-- the rows of relinked source ids, as they stand (facts up to the checkpoint) ...
CREATE TEMP TABLE {stage}.risk_daily_old ON COMMIT DROP AS
SELECT d.*
FROM {schema}.usage_daily d
JOIN {stage}.risk_relink r ON r.source = d.source AND r.source_customer_id = d.source_customer_id;
ANALYZE {stage}.risk_daily_old;
-- ... grouped by (source id, meter, day): a group is split when a link boundary falls inside one of its rows' spans
CREATE TEMP TABLE {stage}.risk_relink_group ON COMMIT DROP AS
SELECT o.source, o.source_customer_id, o.meter, o.day,
       bool_or(EXISTS (SELECT 1 FROM {schema}.link_range b
                       WHERE b.source = o.source AND b.source_customer_id = o.source_customer_id
                         AND b.known_through = 9223372036854775807
                         AND o.first_event_at < b.valid_from AND b.valid_from <= o.last_event_at)) AS is_split
FROM {stage}.risk_daily_old o
GROUP BY 1, 2, 3, 4;
ANALYZE {stage}.risk_relink_group;
-- ... and resolved again with the latest links: a row of an unsplit group whole, a split group fact by fact
CREATE TEMP TABLE {stage}.risk_daily_new ON COMMIT DROP AS
WITH split_fact AS MATERIALIZED (   -- the facts of split groups: one pass over usage_facts, only when there are any
    SELECT f.position, f.source, f.source_customer_id, f.meter, f.quantity, f.event_time,
           (f.event_time AT TIME ZONE 'UTC')::date AS day
    FROM usage_facts f
    WHERE (f.source, f.source_customer_id) IN (SELECT source, source_customer_id
                                               FROM {stage}.risk_relink_group WHERE is_split)
      AND f.position <= {checkpoint}
      AND EXISTS (SELECT 1 FROM {stage}.risk_relink_group WHERE is_split)
), piece AS (
    SELECT o.source, o.source_customer_id, o.meter, o.day, o.first_event_at AS resolve_at, o.is_late, o.units,
           o.fact_count, o.first_event_at, o.last_event_at, o.first_usage_at, o.last_usage_at,
           o.first_position, o.last_position
    FROM {stage}.risk_daily_old o
    JOIN {stage}.risk_relink_group g
      ON g.source = o.source AND g.source_customer_id = o.source_customer_id AND g.meter = o.meter AND g.day = o.day
    WHERE NOT g.is_split
    UNION ALL
    SELECT f.source, f.source_customer_id, f.meter, f.day, f.event_time, f.position > {cutoff[f.event_time]},
           f.quantity, 1, f.event_time, f.event_time, CASE WHEN f.quantity > 0 THEN f.event_time END,
           CASE WHEN f.quantity > 0 THEN f.event_time END, f.position, f.position
    FROM split_fact f
    JOIN {stage}.risk_relink_group g
      ON g.source = f.source AND g.source_customer_id = f.source_customer_id AND g.meter = f.meter AND g.day = f.day
    WHERE g.is_split
)
SELECT p.source, p.source_customer_id, p.meter, p.day, r.customer_id, p.is_late,
       sum(p.units)::bigint AS units, sum(p.fact_count)::bigint AS fact_count,
       min(p.first_event_at) AS first_event_at, max(p.last_event_at) AS last_event_at,
       min(p.first_usage_at) AS first_usage_at, max(p.last_usage_at) AS last_usage_at,
       min(p.first_position) AS first_position, max(p.last_position) AS last_position
FROM piece p
LEFT JOIN {schema}.link_range r
       ON r.source = p.source AND r.source_customer_id = p.source_customer_id
      AND r.known_through = 9223372036854775807
      AND r.valid_from <= p.resolve_at AND p.resolve_at < r.valid_to
GROUP BY 1, 2, 3, 4, 5, 6;
-- the new facts, resolved one by one
CREATE TEMP TABLE {stage}.risk_daily_add ON COMMIT DROP AS
SELECT f.source, f.source_customer_id, f.meter, (f.event_time AT TIME ZONE 'UTC')::date AS day, r.customer_id,
       f.position > {cutoff[f.event_time]} AS is_late,
       sum(f.quantity)::bigint AS units, count(*) AS fact_count,
       min(f.event_time) AS first_event_at, max(f.event_time) AS last_event_at,
       min(f.event_time) FILTER (WHERE f.quantity > 0) AS first_usage_at,
       max(f.event_time) FILTER (WHERE f.quantity > 0) AS last_usage_at,
       min(f.position) AS first_position, max(f.position) AS last_position
FROM usage_facts f
LEFT JOIN {schema}.link_range r
       ON r.source = f.source AND r.source_customer_id = f.source_customer_id
      AND r.known_through = 9223372036854775807
      AND r.valid_from <= f.event_time AND f.event_time < r.valid_to
WHERE f.position > {checkpoint} AND f.position <= {head}
GROUP BY 1, 2, 3, 4, 5, 6;
-- the (customer, meter, day) keys whose units or fact count change
CREATE TEMP TABLE {stage}.risk_changed ON COMMIT DROP AS
WITH old_units AS (
    SELECT customer_id, meter, day, sum(units) AS units, sum(fact_count) AS fact_count
    FROM {stage}.risk_daily_old WHERE customer_id IS NOT NULL GROUP BY 1, 2, 3
), new_units AS (
    SELECT customer_id, meter, day, sum(units) AS units, sum(fact_count) AS fact_count
    FROM {stage}.risk_daily_new WHERE customer_id IS NOT NULL GROUP BY 1, 2, 3
)
SELECT customer_id, meter, day
FROM old_units o FULL JOIN new_units n USING (customer_id, meter, day)
WHERE o.units IS DISTINCT FROM n.units OR o.fact_count IS DISTINCT FROM n.fact_count
UNION
SELECT customer_id, meter, day FROM {stage}.risk_daily_add WHERE customer_id IS NOT NULL;
ANALYZE {stage}.risk_changed;
CREATE TEMP TABLE {stage}.risk_first_before ON COMMIT DROP AS
SELECT p.customer_id, p.meter,
       (SELECT min(d.day) FROM {schema}.usage_daily d
        WHERE d.customer_id = p.customer_id AND d.meter = p.meter AND d.units > 0) AS first_day
FROM (SELECT DISTINCT customer_id, meter FROM {stage}.risk_changed) p;
-- apply: the relinked rows replaced, the new facts added
DELETE FROM {schema}.usage_daily d
USING {stage}.risk_relink r
WHERE d.source = r.source AND d.source_customer_id = r.source_customer_id;
INSERT INTO {schema}.usage_daily SELECT * FROM {stage}.risk_daily_new;
INSERT INTO {schema}.usage_daily AS d SELECT * FROM {stage}.risk_daily_add
ON CONFLICT (source, source_customer_id, meter, day, customer_id, is_late) DO UPDATE
SET units = d.units + excluded.units,
    fact_count = d.fact_count + excluded.fact_count,
    first_event_at = least(d.first_event_at, excluded.first_event_at),
    last_event_at = greatest(d.last_event_at, excluded.last_event_at),
    first_usage_at = least(d.first_usage_at, excluded.first_usage_at),
    last_usage_at = greatest(d.last_usage_at, excluded.last_usage_at),
    first_position = least(d.first_position, excluded.first_position),
    last_position = greatest(d.last_position, excluded.last_position);
-- @index
CREATE UNIQUE INDEX ON {schema}.usage_daily (source, source_customer_id, meter, day, customer_id, is_late)
    NULLS NOT DISTINCT;
CREATE INDEX ON {schema}.usage_daily (customer_id, meter, day);
