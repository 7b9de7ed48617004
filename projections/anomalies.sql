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
-- Only candidates - days with units >= the minimum and 7 baseline days - get a median and a MAD; only the flagged
-- ones are kept. A rebuild evaluates every day: fill_dense in one ordered pass over usage_daily, or fill_sparse
-- reading only the candidates' baselines (the engine picks by the candidates' share of the days, for the
-- increments' refill too). Incremental: merge sets
-- {stage}.anomaly_scope, disjoint ranges (customer, meter, lo, hi) of days whose result can change, with the pair's
-- first usage day: D..D+28 for each changed day D (its own units, and the baselines it is in), and, when a pair's
-- first usage day moves, from the earlier to 28 days after the later (the baseline's length and the 7-day rule);
-- ranges less than 28 days apart are merged (their reads would overlap); delete removes the rows in the ranges and
-- refill evaluates their candidates again through usage_daily's primary key, like the rebuild in two forms:
-- refill_sparse reads each candidate's 28 days, refill_dense the days from 28 before a range's first candidate to
-- its last, in one window pass.
-- read model: risk
-- depends on: usage_daily, usage_first_day
-- rebuild: fill_sparse|fill_dense, fill_threshold
-- increment: refill scope (merge, delete, refill_sparse|refill_dense, fill_threshold)
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
-- The rule for one candidate day: median and MAD (median of |v - median|) of its baseline's daily units, each
-- percentile_cont(0.5), the mean of the middle two for an even count; score = (units - median) / (1.4826 x MAD + 1),
-- unrounded. One row when the score is at least THRESHOLD, none otherwise; the denominator is >= 1, so a positive
-- threshold needs units - median >= threshold and the MAD is computed only then. SQL, neither strict nor volatile:
-- the planner inlines it into the query (no call per row).
-- The baseline: the units of the previous 28 days that had usage (USAGE_UNITS), plus a zero for each other day
-- of those 28 on or after the first usage day (DAYS_SINCE_FIRST days after it).
CREATE FUNCTION {schema}.anomaly_score(units bigint, usage_units bigint[], days_since_first integer,
                                       threshold numeric)
RETURNS TABLE (baseline_units numeric, score numeric)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT m.median::numeric, (units - m.median::numeric) / (1.4826 * d.mad::numeric + 1)
    FROM (SELECT coalesce(usage_units, ARRAY[]::bigint[])
                 || array_fill(0::bigint, ARRAY[least(28, days_since_first)
                                                - coalesce(cardinality(usage_units), 0)]) AS baseline) b
    CROSS JOIN LATERAL (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS median
                        FROM unnest(b.baseline) v) m
    CROSS JOIN LATERAL (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(v - m.median)) AS mad
                        FROM unnest(b.baseline) v) d
    WHERE (threshold <= 0 OR units - m.median >= threshold)
      AND (units - m.median::numeric) / (1.4826 * d.mad::numeric + 1) >= threshold
$$;
-- @fill_dense
-- Every day's baseline from one ordered pass over usage_daily (a window over its primary key): the cheaper
-- read when candidates are a large share of the days.
INSERT INTO {schema}.anomalies
WITH framed AS (   -- each pair's daily units: the units of the previous 28 days that had usage
    SELECT customer_id, meter, day, units,
           array_agg(units) FILTER (WHERE units > 0) OVER (
               PARTITION BY customer_id, meter ORDER BY day
               RANGE BETWEEN interval '28 days' PRECEDING AND interval '1 day' PRECEDING) AS usage_units
    FROM {schema}.usage_daily
), candidate AS (  -- days that could be flagged: enough units, at least 7 baseline days after the first usage day
    SELECT f.customer_id, f.meter, f.day, f.units, f.usage_units, f.day - p.first_day AS days_since_first
    FROM framed f
    JOIN {schema}.usage_first_day p ON p.customer_id = f.customer_id AND p.meter = f.meter
    WHERE f.units >= {anomaly_min_units} AND f.day - p.first_day >= 7
)
SELECT c.customer_id, c.day, c.meter, c.units, s.baseline_units, round(s.score, 2)
FROM candidate c
CROSS JOIN LATERAL {schema}.anomaly_score(c.units, c.usage_units, c.days_since_first, {anomaly_score}) s;
-- @fill_sparse
-- Only the candidates' baselines, each read through the primary key (28 days of its pair): the cheaper read when
-- candidates are a small share of the days (a window re-aggregates 28 days for every day).
INSERT INTO {schema}.anomalies
WITH candidate AS (  -- days that could be flagged: enough units, at least 7 baseline days
    SELECT d.customer_id, d.meter, d.day, d.units, d.day - p.first_day AS days_since_first
    FROM {schema}.usage_daily d
    JOIN {schema}.usage_first_day p ON p.customer_id = d.customer_id AND p.meter = d.meter
    WHERE d.units >= {anomaly_min_units} AND d.day - p.first_day >= 7
)
SELECT c.customer_id, c.day, c.meter, c.units, s.baseline_units, round(s.score, 2)
FROM candidate c
CROSS JOIN LATERAL (SELECT array_agg(b.units) AS usage_units   -- the units of the previous 28 days that had usage
                    FROM {schema}.usage_daily b
                    WHERE b.customer_id = c.customer_id AND b.meter = c.meter
                      AND b.day >= c.day - 28 AND b.day < c.day AND b.units > 0) w
CROSS JOIN LATERAL {schema}.anomaly_score(c.units, w.usage_units, c.days_since_first, {anomaly_score}) s;
-- @fill_threshold
DELETE FROM {schema}.anomaly_threshold;
INSERT INTO {schema}.anomaly_threshold VALUES ({anomaly_score}, {anomaly_min_units});
-- @merge
DROP TABLE IF EXISTS {stage}.anomaly_scope;
CREATE TEMP TABLE {stage}.anomaly_scope ON COMMIT DROP AS
WITH rethreshold AS (
    SELECT NOT EXISTS (SELECT 1 FROM {schema}.anomaly_threshold
                       WHERE score = {anomaly_score} AND min_units = {anomaly_min_units}) AS yes
), pair AS (       -- each changed pair's first usage day before the run (risk_first_before) and after it
    SELECT b.customer_id, b.meter, b.first_day AS first_before, f.first_day
    FROM {stage}.risk_first_before b
    LEFT JOIN {schema}.usage_first_day f ON f.customer_id = b.customer_id AND f.meter = b.meter
    WHERE NOT (SELECT yes FROM rethreshold)
), reach AS (      -- the days whose result can change (a first day appearing or vanishing: every later day)
    SELECT c.customer_id, c.meter, c.day AS lo, c.day + 28 AS hi
    FROM {stage}.risk_delta c
    WHERE NOT (SELECT yes FROM rethreshold)
    UNION ALL
    SELECT customer_id, meter, least(first_before, first_day),
           CASE WHEN first_before IS NULL OR first_day IS NULL THEN 'infinity'::date
                ELSE greatest(first_before, first_day) + 28 END
    FROM pair
    WHERE first_before IS DISTINCT FROM first_day
), island AS (     -- ranges whose reads overlap merged: a range starts an island when its first day's baseline
                   -- (28 days before it) lies past every range before it; the days between are evaluated too
    SELECT customer_id, meter, lo, hi,
           count(*) FILTER (WHERE lo - 28 > reach_before OR reach_before IS NULL) OVER (
               PARTITION BY customer_id, meter ORDER BY lo, hi ROWS UNBOUNDED PRECEDING) AS island
    FROM (SELECT customer_id, meter, lo, hi,
                 max(hi) OVER (PARTITION BY customer_id, meter ORDER BY lo, hi
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach_before
          FROM reach) r
)
SELECT i.customer_id, i.meter, min(i.lo) AS lo, max(i.hi) AS hi, p.first_day
FROM island i
JOIN pair p ON p.customer_id = i.customer_id AND p.meter = i.meter
GROUP BY i.customer_id, i.meter, i.island, p.first_day
UNION ALL          -- other thresholds than the rows were computed with: every day of every pair
SELECT customer_id, meter, '-infinity'::date, 'infinity'::date, first_day
FROM {schema}.usage_first_day
WHERE (SELECT yes FROM rethreshold);
-- @delete
ANALYZE {stage}.anomaly_scope;
DELETE FROM {schema}.anomalies a
USING {stage}.anomaly_scope s
WHERE a.customer_id = s.customer_id AND a.meter = s.meter AND a.day BETWEEN s.lo AND s.hi;
-- @refill_sparse
-- The scope's candidates, each with its baseline read through the primary key (28 days of its pair). Each range's
-- candidate days are read through the key too (OFFSET 0 keeps the subquery a per-range index scan): joined as a
-- table, the planner hashed the scope and scanned every partition of usage_daily, the history's included, so an
-- increment's cost grew with the store.
INSERT INTO {schema}.anomalies
SELECT r.customer_id, c.day, r.meter, c.units, s.baseline_units, round(s.score, 2)
FROM {stage}.anomaly_scope r
CROSS JOIN LATERAL (SELECT d.day, d.units
                    FROM {schema}.usage_daily d
                    WHERE d.customer_id = r.customer_id AND d.meter = r.meter
                      AND d.day BETWEEN greatest(r.lo, r.first_day + 7) AND r.hi AND d.units >= {anomaly_min_units}
                    OFFSET 0) c
CROSS JOIN LATERAL (SELECT array_agg(b.units) AS usage_units   -- the units of the previous 28 days that had usage
                    FROM {schema}.usage_daily b
                    WHERE b.customer_id = r.customer_id AND b.meter = r.meter
                      AND b.day >= c.day - 28 AND b.day < c.day AND b.units > 0) w
CROSS JOIN LATERAL {schema}.anomaly_score(c.units, w.usage_units, c.day - r.first_day, {anomaly_score}) s
WHERE r.first_day IS NOT NULL;
-- @refill_dense
-- The scope's days in one window pass per range.
INSERT INTO {schema}.anomalies
WITH span AS MATERIALIZED (   -- each range's first and last candidate day: a range without one reads nothing more
    SELECT s.customer_id, s.meter, s.lo, s.first_day, min(c.day) AS first_candidate, max(c.day) AS last_candidate
    FROM {stage}.anomaly_scope s
    CROSS JOIN LATERAL (
        SELECT d.day
        FROM {schema}.usage_daily d
        WHERE d.customer_id = s.customer_id AND d.meter = s.meter
          AND d.day BETWEEN greatest(s.lo, s.first_day + 7) AND s.hi
          AND d.units >= {anomaly_min_units}
        OFFSET 0) c    -- a per-range index scan (as in @refill_sparse), not a scan of every partition
    WHERE s.first_day IS NOT NULL
    GROUP BY s.customer_id, s.meter, s.lo, s.first_day
), series AS (     -- the daily units from 28 days before its first candidate to its last (ranges read disjoint days)
    SELECT s.customer_id, s.meter, s.lo, s.first_day, s.first_candidate, s.last_candidate, d.day, d.units
    FROM span s
    CROSS JOIN LATERAL (SELECT d.day, d.units
                        FROM {schema}.usage_daily d
                        WHERE d.customer_id = s.customer_id AND d.meter = s.meter
                          AND d.day BETWEEN s.first_candidate - 28 AND s.last_candidate
                        OFFSET 0) d
), framed AS (     -- the units of the previous 28 days that had usage
    SELECT customer_id, meter, first_day, first_candidate, day, units,
           array_agg(units) FILTER (WHERE units > 0) OVER (
               PARTITION BY customer_id, meter, lo ORDER BY day
               RANGE BETWEEN interval '28 days' PRECEDING AND interval '1 day' PRECEDING) AS usage_units
    FROM series
), candidate AS (  -- days that could be flagged: enough units, at least 7 baseline days
    SELECT customer_id, meter, day, units, usage_units, day - first_day AS days_since_first
    FROM framed
    WHERE day >= first_candidate AND units >= {anomaly_min_units} AND day - first_day >= 7
)
SELECT c.customer_id, c.day, c.meter, c.units, s.baseline_units, round(s.score, 2)
FROM candidate c
CROSS JOIN LATERAL {schema}.anomaly_score(c.units, c.usage_units, c.days_since_first, {anomaly_score}) s;
-- @index
CREATE INDEX ON {schema}.anomalies (day);
