-- grain: one row per customer x month with on-time usage facts; key: (customer_id, month)
-- facts read: usage_facts (directly for a month being closed, else through usage_daily), identity_link_facts
--             (through link_range), period_close_facts (through period_close)
-- On-time usage as in customer_month_meter.on_time_units (SPEC §4.1, the same rule as usage_fact_resolved): a fact of
-- a closed month m counts when its position < c(m) and its source id resolves at event_time with the links at
-- positions < c(m), for that customer; every attributed fact of an open month counts, with every link known now
-- (which is usage_daily). A closed month's rows are computed from its facts once, when its close is projected, and
-- never change afterwards. "Days with usage" are days with units > 0: a fact with quantity 0 makes a customer-month
-- exist (as it does in customer_month) but makes no day active, no meter used and no first/last usage instant.
-- active_days: distinct UTC days with units > 0; meters_used: meters with units > 0; usage_units: on-time units;
-- units_mom_pct: 100 x (usage_units - previous calendar month's usage_units) / previous, one decimal, empty when the
-- previous month has no row or 0 units; first/last_usage_at: the first and last event_time of a fact with units > 0.
-- Incremental: {stage}.adoption_closing holds the months to compute from their facts (rebuild: every closed month;
-- merge: those closed since the checkpoint), {stage}.adoption_scope the customer-months of open months to derive
-- from usage_daily (rebuild: all; merge: those of the keys in {stage}.risk_changed); apply replaces them.
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
DROP TABLE IF EXISTS {stage}.adoption_closing, {stage}.adoption_scope;
CREATE TEMP TABLE {stage}.adoption_closing ON COMMIT DROP AS
SELECT month, month_start, close_position FROM {schema}.period_close;
CREATE TEMP TABLE {stage}.adoption_scope ON COMMIT DROP AS
SELECT DISTINCT customer_id, to_char(day, 'YYYY-MM') AS month
FROM {schema}.usage_daily
WHERE customer_id IS NOT NULL;
-- @merge
DROP TABLE IF EXISTS {stage}.adoption_closing, {stage}.adoption_scope;
CREATE TEMP TABLE {stage}.adoption_closing ON COMMIT DROP AS
SELECT month, month_start, close_position FROM {schema}.period_close WHERE close_position > {checkpoint};
CREATE TEMP TABLE {stage}.adoption_scope ON COMMIT DROP AS
SELECT DISTINCT customer_id, to_char(day, 'YYYY-MM') AS month FROM {stage}.risk_changed;
-- @apply
DELETE FROM {schema}.adoption a
WHERE a.month IN (SELECT month FROM {stage}.adoption_closing)
   OR ((a.customer_id, a.month) IN (SELECT customer_id, month FROM {stage}.adoption_scope)
       AND a.month NOT IN (SELECT month FROM {schema}.period_close));
INSERT INTO {schema}.adoption (customer_id, month, active_days, meters_used, usage_units, first_usage_at, last_usage_at)
WITH closing_row AS (   -- a month being closed: the usage_daily rows holding any fact before its close
    SELECT d.*, c.month, c.close_position,
           bool_or(d.last_position > c.close_position
                   OR EXISTS (SELECT 1 FROM {schema}.link_range l
                              WHERE l.source = d.source AND l.source_customer_id = d.source_customer_id
                                AND l.known_after > c.close_position))
               OVER (PARTITION BY d.source, d.source_customer_id, d.meter, d.day) AS is_dirty
    FROM {stage}.adoption_closing c
    JOIN {schema}.usage_daily d
      ON d.day >= c.month_start::date AND d.day < (c.month_start + interval '1 month')::date
    WHERE d.first_position < c.close_position
), dirty AS (   -- (source id, meter, day) with facts after the close or links after it: resolved fact by fact
    SELECT DISTINCT source, source_customer_id, meter, day, month, close_position FROM closing_row WHERE is_dirty
), closed_fact AS (
    SELECT r.customer_id, k.month, k.meter, k.day, f.quantity, f.event_time
    FROM usage_facts f
    JOIN dirty k
      ON k.source = f.source AND k.source_customer_id = f.source_customer_id AND k.meter = f.meter
     AND k.day = (f.event_time AT TIME ZONE 'UTC')::date
    JOIN {schema}.link_range r
      ON r.source = f.source AND r.source_customer_id = f.source_customer_id
     AND r.known_after < k.close_position AND k.close_position <= r.known_through
     AND r.valid_from <= f.event_time AND f.event_time < r.valid_to
    WHERE f.position < k.close_position AND EXISTS (SELECT 1 FROM dirty)
), day_usage AS (
    -- every fact of a clean row is on time and resolves before the close as it does now (no later link)
    SELECT customer_id, month, meter, day, sum(units) AS units,
           min(first_usage_at) AS first_usage_at, max(last_usage_at) AS last_usage_at
    FROM closing_row
    WHERE NOT is_dirty AND customer_id IS NOT NULL
    GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT customer_id, month, meter, day, sum(quantity),
           min(event_time) FILTER (WHERE quantity > 0), max(event_time) FILTER (WHERE quantity > 0)
    FROM closed_fact
    GROUP BY 1, 2, 3, 4
    UNION ALL   -- an open month: every attributed fact, with every link known now
    SELECT d.customer_id, s.month, d.meter, d.day, sum(d.units), min(d.first_usage_at), max(d.last_usage_at)
    FROM {schema}.usage_daily d
    JOIN {stage}.adoption_scope s ON s.customer_id = d.customer_id AND s.month = to_char(d.day, 'YYYY-MM')
    WHERE s.month NOT IN (SELECT month FROM {schema}.period_close)
    GROUP BY 1, 2, 3, 4
)
SELECT customer_id, month,
       count(DISTINCT day) FILTER (WHERE units > 0), count(DISTINCT meter) FILTER (WHERE units > 0),
       sum(units)::bigint, min(first_usage_at), max(last_usage_at)
FROM day_usage
GROUP BY customer_id, month;
-- month-over-month: the rows replaced and the months after them
UPDATE {schema}.adoption a
SET units_mom_pct = x.pct
FROM (
    SELECT t.customer_id, t.month,
           CASE WHEN p.usage_units > 0
                THEN round((t.usage_units - p.usage_units) * 100.0 / p.usage_units, 1) END AS pct
    FROM {schema}.adoption t
    LEFT JOIN {schema}.adoption p
           ON p.customer_id = t.customer_id
          AND p.month = to_char(to_date(t.month, 'YYYY-MM') - interval '1 month', 'YYYY-MM')
    WHERE t.month IN (SELECT month FROM {stage}.adoption_closing
                      UNION SELECT to_char(month_start + interval '1 month', 'YYYY-MM') FROM {stage}.adoption_closing)
       OR (t.customer_id, t.month) IN (
              SELECT customer_id, month FROM {stage}.adoption_scope
              UNION SELECT customer_id, to_char(to_date(month, 'YYYY-MM') + interval '1 month', 'YYYY-MM')
              FROM {stage}.adoption_scope)
) x
WHERE a.customer_id = x.customer_id AND a.month = x.month AND a.units_mom_pct IS DISTINCT FROM x.pct;
