-- grain: one row per customer x UTC day x meter whose units are flagged as a spike; key: (customer_id, day, meter)
-- facts read: usage_facts, identity_link_facts (both through usage_daily)
-- A day's units (every usage fact of that UTC day, late ones included, for the customer resolved at event_time with
-- every link known now) against the customer's own baseline for the meter: the median of its daily units over the 28
-- previous days, counting only days on or after its first day with units > 0 (such days without usage count as 0).
-- MAD is the median of |daily units - median| over the same days; score = (units - median) / (1.4826 x MAD + 1).
-- Flagged, and kept here, when the baseline has at least 7 days, units >= {anomaly_min_units} and the (unrounded)
-- score >= {anomaly_score} (LEDGER_ANOMALY_MIN_UNITS, LEDGER_ANOMALY_SCORE). baseline_units is the median (a .5 for
-- an even count); score is rounded to two decimals. anomaly_threshold keeps the thresholds the rows were computed
-- with: a run with other thresholds evaluates every pair again.
-- Incremental: {stage}.anomaly_scope holds (customer, meter, lo, hi, first_day): the days lo..hi to evaluate again
-- (rebuild: every day; merge: from the earliest changed day to 28 days after the latest changed day or the pair's
-- first usage day before or after the run, whichever is latest); apply replaces the rows of those days.
-- @create
CREATE TABLE {schema}.anomalies (
    customer_id    text NOT NULL,
    day            date NOT NULL,              -- UTC
    meter          text NOT NULL,
    units          bigint NOT NULL,
    baseline_units numeric NOT NULL,
    score          numeric NOT NULL,
    PRIMARY KEY (customer_id, day, meter)
);
CREATE TABLE {schema}.anomaly_threshold (
    score     numeric NOT NULL,
    min_units bigint NOT NULL
);
-- @fill
DROP TABLE IF EXISTS {stage}.anomaly_scope;
CREATE TEMP TABLE {stage}.anomaly_scope ON COMMIT DROP AS
SELECT customer_id, meter, min(day) AS lo, max(day) AS hi, min(day) FILTER (WHERE units > 0) AS first_day
FROM {schema}.usage_daily
WHERE customer_id IS NOT NULL
GROUP BY customer_id, meter;
-- @merge
DROP TABLE IF EXISTS {stage}.anomaly_scope;
CREATE TEMP TABLE {stage}.anomaly_scope ON COMMIT DROP AS
WITH rethreshold AS (
    SELECT NOT EXISTS (SELECT 1 FROM {schema}.anomaly_threshold
                       WHERE score = {anomaly_score} AND min_units = {anomaly_min_units}) AS yes
), pair AS (
    SELECT c.customer_id, c.meter, min(c.day) AS lo, max(c.day) AS last_changed, max(b.first_day) AS first_before
    FROM {stage}.risk_changed c
    LEFT JOIN {stage}.risk_first_before b ON b.customer_id = c.customer_id AND b.meter = c.meter
    WHERE NOT (SELECT yes FROM rethreshold)
    GROUP BY c.customer_id, c.meter
), scoped AS (
    SELECT p.customer_id, p.meter, p.lo, p.last_changed, p.first_before,
           (SELECT min(d.day) FROM {schema}.usage_daily d
            WHERE d.customer_id = p.customer_id AND d.meter = p.meter AND d.units > 0) AS first_day
    FROM pair p
)
SELECT customer_id, meter, lo, greatest(last_changed, first_before, first_day) + 28 AS hi, first_day
FROM scoped
UNION ALL   -- other thresholds than the rows were computed with: every day of every pair
SELECT customer_id, meter, min(day), max(day), min(day) FILTER (WHERE units > 0)
FROM {schema}.usage_daily
WHERE customer_id IS NOT NULL AND (SELECT yes FROM rethreshold)
GROUP BY customer_id, meter;
-- @apply
ANALYZE {stage}.anomaly_scope;
DELETE FROM {schema}.anomalies a
USING {stage}.anomaly_scope s
WHERE a.customer_id = s.customer_id AND a.meter = s.meter AND a.day BETWEEN s.lo AND s.hi;
INSERT INTO {schema}.anomalies
WITH series AS (   -- the pair's daily units over the days to evaluate and the 28 before them
    SELECT d.customer_id, d.meter, d.day, sum(d.units)::bigint AS units
    FROM {stage}.anomaly_scope s
    JOIN {schema}.usage_daily d
      ON d.customer_id = s.customer_id AND d.meter = s.meter AND d.day BETWEEN s.lo - 28 AND s.hi
    WHERE s.first_day IS NOT NULL
    GROUP BY 1, 2, 3
), framed AS (     -- the units of the previous 28 days that had usage
    SELECT customer_id, meter, day, units,
           array_agg(units) FILTER (WHERE units > 0) OVER (
               PARTITION BY customer_id, meter ORDER BY day
               RANGE BETWEEN interval '28 days' PRECEDING AND interval '1 day' PRECEDING) AS usage_units
    FROM series
), candidate AS (  -- baseline: the previous 28 days on or after the first usage day, zero where no usage
    SELECT f.customer_id, f.meter, f.day, f.units,
           coalesce(f.usage_units, ARRAY[]::bigint[])
           || array_fill(0::bigint, ARRAY[least(28, f.day - s.first_day) - coalesce(cardinality(f.usage_units), 0)])
           AS baseline
    FROM framed f
    JOIN {stage}.anomaly_scope s ON s.customer_id = f.customer_id AND s.meter = f.meter
    WHERE f.day BETWEEN s.lo AND s.hi
      AND f.units >= {anomaly_min_units}
      AND f.day - s.first_day >= 7
), centred AS (
    SELECT c.customer_id, c.meter, c.day, c.units, c.baseline, m.median
    FROM candidate c
    CROSS JOIN LATERAL (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS median
                        FROM unnest(c.baseline) v) m
), scored AS (     -- the denominator is >= 1: a positive threshold needs units - median >= threshold
    SELECT c.customer_id, c.day, c.meter, c.units, c.median::numeric AS baseline_units,
           (c.units - c.median::numeric) / (1.4826 * d.mad::numeric + 1) AS score
    FROM centred c
    CROSS JOIN LATERAL (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(v - c.median)) AS mad
                        FROM unnest(c.baseline) v) d
    WHERE {anomaly_score} <= 0 OR c.units - c.median >= {anomaly_score}
)
SELECT customer_id, day, meter, units, baseline_units, round(score, 2)
FROM scored
WHERE score >= {anomaly_score};
DELETE FROM {schema}.anomaly_threshold;
INSERT INTO {schema}.anomaly_threshold VALUES ({anomaly_score}, {anomaly_min_units});
-- @index
CREATE INDEX ON {schema}.anomalies (day);
