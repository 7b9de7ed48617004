-- grain: one row per customer x month with on-time usage facts; key: (customer_id, month)
-- facts read: usage_facts (through usage_daily; directly for a month being closed whose source id got a later link),
--             identity_link_facts (through link_range), period_close_facts (through period_close)
-- On-time usage by the rule of customer_month_meter.on_time_units (SPEC §4.1): a fact of a closed month m counts when
-- its position < c(m) and its source id resolves at event_time with the links at positions < c(m), for that customer;
-- every attributed fact of an open month counts, for the customer resolved with every link known now (usage_daily).
-- "Days with usage" are days with units > 0: a fact with quantity 0 makes a customer-month exist (as it does in
-- customer_month) but makes no day active, no meter used and no first/last usage instant.
--   active_days          distinct UTC days with units > 0
--   meters_used          meters with units > 0
--   usage_units          on-time units, all meters
--   first/last_usage_at  the first/last event_time of a fact with units > 0
--   units_mom_pct        100 x (usage_units - previous calendar month's) / previous month's, one decimal; empty
--                        when the previous month has no row or 0 units
-- A closed month's rows are computed once, when its close is projected, and never change afterwards (their
-- units_mom_pct follows an open previous month). Its facts before the close are usage_daily's rows with is_late
-- false; they resolve before the close as they do now unless their source id got a link after the close, and such a
-- source id's facts of the month are resolved again, one by one, against the links before the close.
-- Sections: fill (rebuild) / merge (incremental) set the scope - {stage}.adoption_closing, the months to compute
-- as closed (every closed month / those closed since the checkpoint), {stage}.adoption_scope, the customer-months of
-- open months to derive again (every one / those of the keys in {stage}.risk_changed, left by usage_daily's merge), and
-- {stage}.adoption_open, their usage_daily rows; apply replaces the scoped rows and every row of the closing months.
-- @create
CREATE TABLE {schema}.adoption (
    customer_id    text NOT NULL,
    month          text NOT NULL,               -- YYYY-MM
    active_days    integer NOT NULL,
    meters_used    integer NOT NULL,
    usage_units    bigint NOT NULL,
    units_mom_pct  numeric,
    first_usage_at timestamptz,
    last_usage_at  timestamptz,
    PRIMARY KEY (customer_id, month)
);
-- @fill
DROP TABLE IF EXISTS {stage}.adoption_closing, {stage}.adoption_open, {stage}.adoption_scope;
CREATE TEMP TABLE {stage}.adoption_closing ON COMMIT DROP AS
SELECT month, month_start, close_position FROM {schema}.period_close;
CREATE TEMP TABLE {stage}.adoption_open ON COMMIT DROP AS
SELECT d.customer_id, to_char(d.day, 'YYYY-MM') AS month, d.meter, d.day, d.units, d.first_usage_at, d.last_usage_at
FROM {schema}.usage_daily d
WHERE d.customer_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {schema}.period_close c   -- day ranges: to_char on every row costs more than the read
                  WHERE d.day >= c.month_start::date AND d.day < (c.month_start + interval '1 month')::date);
CREATE TEMP TABLE {stage}.adoption_scope ON COMMIT DROP AS
SELECT DISTINCT customer_id, month FROM {stage}.adoption_open;
-- @merge
DROP TABLE IF EXISTS {stage}.adoption_closing, {stage}.adoption_open, {stage}.adoption_scope;
CREATE TEMP TABLE {stage}.adoption_closing ON COMMIT DROP AS
SELECT month, month_start, close_position FROM {schema}.period_close WHERE close_position > {checkpoint};
CREATE TEMP TABLE {stage}.adoption_scope ON COMMIT DROP AS
SELECT DISTINCT customer_id, to_char(day, 'YYYY-MM') AS month
FROM {stage}.risk_changed
WHERE to_char(day, 'YYYY-MM') NOT IN (SELECT month FROM {schema}.period_close);
ANALYZE {stage}.adoption_scope;
-- The scoped customer-months read through the index on (customer_id, meter, day) while they are under a twentieth of
-- all (adoption's rows): the planner cannot tell that a month's rows are a small part of a customer's, and otherwise
-- scans the whole table for a few hundred of them; past that share a scan is the cheaper read.
SELECT set_config('enable_seqscan', CASE WHEN (SELECT count(*) FROM {stage}.adoption_scope) * 20
                                              < (SELECT count(*) FROM {schema}.adoption) THEN 'off' ELSE 'on' END, true);
CREATE TEMP TABLE {stage}.adoption_open ON COMMIT DROP AS
SELECT d.customer_id, s.month, d.meter, d.day, d.units, d.first_usage_at, d.last_usage_at
FROM {stage}.adoption_scope s
JOIN {schema}.usage_daily d
  ON d.customer_id = s.customer_id
 AND d.day >= to_date(s.month, 'YYYY-MM') AND d.day < (to_date(s.month, 'YYYY-MM') + interval '1 month')::date;
RESET enable_seqscan;
-- @apply
ANALYZE {stage}.adoption_closing;
ANALYZE {stage}.adoption_scope;
DROP TABLE IF EXISTS {stage}.adoption_relinked;
-- a source id with a link after a closing month's close: its facts of that month are resolved one by one
CREATE TEMP TABLE {stage}.adoption_relinked ON COMMIT DROP AS
SELECT DISTINCT l.source, l.source_customer_id, c.month, c.month_start, c.close_position
FROM {stage}.adoption_closing c
JOIN {schema}.link_range l ON l.known_after > c.close_position;
ANALYZE {stage}.adoption_relinked;
DELETE FROM {schema}.adoption a
USING {stage}.adoption_closing c
WHERE a.month = c.month;
DELETE FROM {schema}.adoption a
USING {stage}.adoption_scope s
WHERE a.customer_id = s.customer_id AND a.month = s.month;
-- a day (a meter) is used when its units are > 0
INSERT INTO {schema}.adoption (customer_id, month, active_days, meters_used, usage_units, first_usage_at, last_usage_at)
WITH fact AS MATERIALIZED (   -- one pass over usage_facts, only when a source id was linked after a close
    SELECT k.month, k.close_position, f.source, f.source_customer_id, f.meter, f.quantity, f.event_time
    FROM usage_facts f
    JOIN {stage}.adoption_relinked k ON k.source = f.source AND k.source_customer_id = f.source_customer_id
    WHERE f.position < k.close_position   -- a range, not date_trunc(...) = month_start: that hashes every fact
      AND f.event_time >= k.month_start AT TIME ZONE 'UTC'
      AND f.event_time < (k.month_start + interval '1 month') AT TIME ZONE 'UTC'
      AND EXISTS (SELECT 1 FROM {stage}.adoption_relinked)
), on_time AS (    -- the on-time usage of the customer-months to replace, in rows of one meter and day (or fact)
    SELECT d.customer_id, c.month, d.meter, d.day, d.units, d.first_usage_at, d.last_usage_at
    FROM {stage}.adoption_closing c   -- a month being closed: its facts before the close, as resolved now ...
    JOIN {schema}.usage_daily d
      ON d.day >= c.month_start::date AND d.day < (c.month_start + interval '1 month')::date
    WHERE NOT d.is_late AND d.customer_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM {stage}.adoption_relinked k
                      WHERE k.source = d.source AND k.source_customer_id = d.source_customer_id AND k.month = c.month)
    UNION ALL       -- ... which is how they resolve before it, unless a link came after it (SPEC §4.1: links < c(m))
    SELECT l.customer_id, f.month, f.meter, (f.event_time AT TIME ZONE 'UTC')::date, f.quantity,
           CASE WHEN f.quantity > 0 THEN f.event_time END, CASE WHEN f.quantity > 0 THEN f.event_time END
    FROM fact f
    JOIN {schema}.link_range l
      ON l.source = f.source AND l.source_customer_id = f.source_customer_id
     AND l.known_after < f.close_position AND f.close_position <= l.known_through
     AND l.valid_from <= f.event_time AND f.event_time < l.valid_to
    UNION ALL       -- an open month: every attributed fact, with every link known now
    SELECT customer_id, month, meter, day, units, first_usage_at, last_usage_at FROM {stage}.adoption_open
), total AS (      -- one pass, two hash tables: each day's units (meter null) and each meter's (day null)
    SELECT customer_id, month, day, meter, sum(units) AS units, min(first_usage_at) AS first_usage_at,
           max(last_usage_at) AS last_usage_at
    FROM on_time
    GROUP BY GROUPING SETS ((customer_id, month, day), (customer_id, month, meter))
)
SELECT customer_id, month, count(*) FILTER (WHERE day IS NOT NULL AND units > 0),
       count(*) FILTER (WHERE meter IS NOT NULL AND units > 0), sum(units) FILTER (WHERE meter IS NOT NULL)::bigint,
       min(first_usage_at), max(last_usage_at)
FROM total
GROUP BY customer_id, month;
-- month-over-month: the rows replaced and the months after them
UPDATE {schema}.adoption a
SET units_mom_pct = x.pct
FROM (
    SELECT t.customer_id, t.month,
           CASE WHEN p.usage_units > 0
                THEN round((t.usage_units - p.usage_units) * 100.0 / p.usage_units, 1) END AS pct
    FROM (SELECT customer_id, month FROM {stage}.adoption_scope
          UNION SELECT customer_id, to_char(to_date(month, 'YYYY-MM') + interval '1 month', 'YYYY-MM')
                FROM {stage}.adoption_scope
          UNION SELECT a.customer_id, a.month
                FROM (SELECT month FROM {stage}.adoption_closing
                      UNION SELECT to_char(month_start + interval '1 month', 'YYYY-MM') FROM {stage}.adoption_closing) c
                JOIN {schema}.adoption a ON a.month = c.month) k
    JOIN {schema}.adoption t ON t.customer_id = k.customer_id AND t.month = k.month
    LEFT JOIN {schema}.adoption p
           ON p.customer_id = t.customer_id
          AND p.month = to_char(to_date(t.month, 'YYYY-MM') - interval '1 month', 'YYYY-MM')
) x
WHERE a.customer_id = x.customer_id AND a.month = x.month AND a.units_mom_pct IS DISTINCT FROM x.pct;
