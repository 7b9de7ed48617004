-- grain: one row per customer x meter with a UTC day of units > 0 in usage_daily; key: (customer_id, meter)
-- facts read: usage_facts, identity_link_facts (both through usage_daily)
-- Each pair's first usage day: where its anomaly baselines start (SPEC's "days on or after its first usage of
-- that meter") and the 7-day rule counts from. Internal, not exported. Kept beside usage_daily so an increment
-- reads a pair's first day from a table of one row per pair instead of from the day grain (a cold random read of
-- a table larger than memory per changed pair: 28 of 34 s of a 100k-fact increment at 10M facts).
-- Incremental (merge, after usage_daily's): {stage}.risk_first_before keeps each changed pair's first day before
-- the run, for the anomalies' merge. Quantities are never negative, so a pair whose changes add units only keeps
-- its first day or moves it to an earlier changed day with units > 0; a pair with units taken away (its facts
-- moved to another customer by a relink) may lose its first day, and reads it again from usage_daily.
-- read model: risk
-- depends on: usage_daily
-- rebuild: fill
-- increment: add in place (merge)
-- @create
CREATE TABLE {schema}.usage_first_day (
    customer_id text NOT NULL,
    meter       text NOT NULL,
    first_day   date NOT NULL,              -- UTC
    PRIMARY KEY (customer_id, meter)
);
-- @fill
INSERT INTO {schema}.usage_first_day
SELECT customer_id, meter, min(day)
FROM {schema}.usage_daily
WHERE units > 0
GROUP BY customer_id, meter;
ANALYZE {schema}.usage_first_day;
-- @merge
DROP TABLE IF EXISTS {stage}.risk_first_before;
CREATE TEMP TABLE {stage}.risk_first_before ON COMMIT DROP AS
SELECT p.customer_id, p.meter, f.first_day, p.units_taken, p.first_added
FROM (SELECT customer_id, meter, bool_or(units < 0) AS units_taken, min(day) FILTER (WHERE units > 0) AS first_added
      FROM {stage}.risk_delta
      GROUP BY customer_id, meter) p
LEFT JOIN {schema}.usage_first_day f ON f.customer_id = p.customer_id AND f.meter = p.meter;
ANALYZE {stage}.risk_first_before;
INSERT INTO {schema}.usage_first_day AS f   -- units added only: the earlier of the two
SELECT customer_id, meter, first_added
FROM {stage}.risk_first_before
WHERE NOT units_taken AND first_added IS NOT NULL
ON CONFLICT (customer_id, meter) DO UPDATE
SET first_day = excluded.first_day
WHERE excluded.first_day < f.first_day;
DELETE FROM {schema}.usage_first_day f      -- units taken away: read again from the day grain
USING {stage}.risk_first_before b
WHERE b.units_taken AND f.customer_id = b.customer_id AND f.meter = b.meter;
INSERT INTO {schema}.usage_first_day
SELECT b.customer_id, b.meter, d.first_day
FROM {stage}.risk_first_before b
CROSS JOIN LATERAL (SELECT min(d.day) AS first_day FROM {schema}.usage_daily d
                    WHERE d.customer_id = b.customer_id AND d.meter = b.meter AND d.units > 0) d
WHERE b.units_taken AND d.first_day IS NOT NULL;
