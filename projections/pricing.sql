-- grain: none of its own; the pricing rule of SPEC §4.0 for a set of requests, used by customer_month_priced,
-- late_adjustments, restatements and `ledger calc diff`.
-- facts read: attribute_facts (through attribute_key, dim_customer and dim_customer.versions), price_facts, usage_facts (through
--             usage_on_time, usage_on_time_day for a month priced day by day, and usage_late)
-- @price reads {stage}.price_req (req bigint, customer_id text, month text, q bigint, plan_rule text,
-- late_through bigint, meter text): price the customer-month as known at position q (the attribute and price facts
-- at positions <= q) under plan_rule, on its on-time units plus the units of its late facts attributed at positions
-- <= late_through (-1: on-time units alone). It writes {stage}.price_line (req, meter, amount_cents, included_units,
-- overage_units, unpriced_units): one row per line, the base fee with meter '' and a meter's line for each meter
-- with units or listed by a price of the month's plans. A line absent from it prices 0. A request with a meter
-- prices that meter's line alone (a meter's line reads only its own units and prices; no base fee line): the late
-- adjustments' margins are per meter.
-- A month's days take the plan of the version in effect at their first instant, or of the first version that
-- starts within the month where none is (daily_prorated); under month_start every day takes the month-start
-- version's plan. Only a request whose days have more than one plan needs its units by day: usage_on_time_day's
-- (step 4).
-- @price
DROP TABLE IF EXISTS {stage}.version_pair, {stage}.req_version, {stage}.req_run,
    {stage}.req_plan_days, {stage}.req_multi, {stage}.req_price, {stage}.req_price_meter,
    {stage}.req_units, {stage}.req_plan, {stage}.price_line;
ANALYZE {stage}.price_req;
-- 1. the versions as known at q: dim_customer's where no attribute fact of the customer came after q (only the
-- facts after the smallest q are read: none when every q is the head)
CREATE TABLE {stage}.version_pair AS
SELECT DISTINCT r.customer_id, r.q
FROM {stage}.price_req r
JOIN (SELECT customer_id, max(position) AS last_position FROM {schema}.attribute_key
      WHERE position <= {head} AND position > (SELECT min(q) FROM {stage}.price_req)
        AND customer_id IN (SELECT customer_id FROM {stage}.price_req)
      GROUP BY customer_id) a ON a.customer_id = r.customer_id AND a.last_position > r.q;
CREATE TABLE {stage}.req_version AS
SELECT customer_id, q, valid_from, valid_to, plan FROM (
-- @include dim_customer.versions
) v
UNION ALL
SELECT p.customer_id, p.q, d.valid_from, d.valid_to, d.plan
FROM (SELECT DISTINCT customer_id, q FROM {stage}.price_req) p
JOIN {schema}.dim_customer d ON d.customer_id = p.customer_id
WHERE NOT EXISTS (SELECT 1 FROM {stage}.version_pair x WHERE x.customer_id = p.customer_id AND x.q = p.q);
-- 2. the month's days by plan, as runs of days first_day..last_day
CREATE TABLE {stage}.req_run AS
WITH m AS (
    SELECT r.req, r.customer_id, r.q, r.plan_rule, (r.month || '-01')::timestamp AT TIME ZONE 'UTC' AS starts,
           ((r.month || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC' AS ends,
           ((r.month || '-01')::date + interval '1 month' - interval '1 day')::date
               - (r.month || '-01')::date + 1 AS days,
           (r.month || '-01')::date AS first_date
    FROM {stage}.price_req r
), v AS (
    SELECT m.*, v.valid_from, v.valid_to, v.plan, row_number() OVER (PARTITION BY m.req ORDER BY v.valid_from) AS n
    FROM m
    JOIN {stage}.req_version v ON v.customer_id = m.customer_id AND v.q = m.q
     AND v.valid_from < m.ends AND (v.valid_to IS NULL OR v.valid_to > m.starts)
), spans AS (   -- the days whose first instant falls in the version; the first version also takes the days before it
    SELECT req, plan, n, plan_rule, days,
           CASE WHEN n = 1 THEN 1
                ELSE ((valid_from AT TIME ZONE 'UTC' + interval '1 day' - interval '1 microsecond')::date
                      - first_date + 1) END AS first_day,
           CASE WHEN valid_to IS NULL OR valid_to >= ends THEN days
                ELSE ((valid_to AT TIME ZONE 'UTC' + interval '1 day' - interval '1 microsecond')::date
                      - first_date) END AS last_day
    FROM v
)
SELECT req, plan, first_day::int, last_day::int, days::int FROM spans
WHERE plan_rule = 'daily_prorated' AND first_day <= last_day
UNION ALL
SELECT req, plan, 1, days::int, days::int FROM spans WHERE plan_rule = 'month_start' AND n = 1;
CREATE TABLE {stage}.req_plan_days AS
SELECT req, plan, ledger_sum(last_day - first_day + 1) AS plan_days, min(days)::bigint AS days
FROM {stage}.req_run GROUP BY req, plan;
CREATE TABLE {stage}.req_multi AS
SELECT req FROM {stage}.req_plan_days GROUP BY req HAVING count(*) > 1;
-- 3. the plans' prices for the month, as known at q
CREATE TABLE {stage}.req_price AS
SELECT DISTINCT ON (k.plan, k.month, k.q) k.plan, k.month, k.q, p.base_fee_cents, p.meters
FROM (SELECT DISTINCT d.plan, r.month, r.q FROM {stage}.req_plan_days d JOIN {stage}.price_req r USING (req)
      WHERE d.plan IS NOT NULL) k
JOIN price_facts p ON p.plan = k.plan AND p.effective_month <= k.month AND p.position <= k.q
ORDER BY k.plan, k.month, k.q, p.effective_month DESC;
CREATE TABLE {stage}.req_price_meter AS
SELECT p.plan, p.month, p.q, m.key AS meter, (m.value ->> 'included_units')::bigint AS included_units,
       (m.value ->> 'unit_price_cents')::bigint AS unit_price_cents
FROM {stage}.req_price p CROSS JOIN LATERAL jsonb_each(p.meters) m;
-- 4. units by plan: a single-plan request's units are all its plan's; a multi-plan one's go by day, from
-- usage_on_time_day (its customer-month is in split_month: a month whose days have more than one plan at q has an
-- attribute fact effective inside it at a position <= q), never from the facts again.
CREATE TABLE {stage}.req_units AS
WITH single AS (
    SELECT r.*, d.plan FROM {stage}.price_req r
    LEFT JOIN {stage}.req_plan_days d ON d.req = r.req
    WHERE r.req NOT IN (SELECT req FROM {stage}.req_multi)
), multi AS (
    SELECT r.* FROM {stage}.price_req r WHERE r.req IN (SELECT req FROM {stage}.req_multi)
), day_units AS (
    SELECT m.req, d.meter, d.day::int AS day, d.units
    FROM multi m JOIN {schema}.usage_on_time_day d ON d.customer_id = m.customer_id AND d.month = m.month
    WHERE m.meter IS NULL OR d.meter = m.meter
    UNION ALL
    SELECT m.req, l.meter, extract(day FROM l.event_time AT TIME ZONE 'UTC')::int, l.quantity
    FROM multi m JOIN {schema}.usage_late l
      ON l.customer_id = m.customer_id AND l.month = m.month AND l.attribution_position <= m.late_through
    WHERE m.meter IS NULL OR l.meter = m.meter
), plan_units AS (
    SELECT s.req, s.plan, o.meter, o.units
    FROM single s JOIN {schema}.usage_on_time o ON o.customer_id = s.customer_id AND o.month = s.month
    WHERE s.meter IS NULL OR o.meter = s.meter
    UNION ALL
    SELECT s.req, s.plan, l.meter, l.quantity
    FROM single s JOIN {schema}.usage_late l
      ON l.customer_id = s.customer_id AND l.month = s.month AND l.attribution_position <= s.late_through
    WHERE s.meter IS NULL OR l.meter = s.meter
    UNION ALL
    SELECT u.req, r.plan, u.meter, u.units
    FROM day_units u JOIN {stage}.req_run r ON r.req = u.req AND u.day BETWEEN r.first_day AND r.last_day
)
SELECT req, plan, meter, ledger_sum(units) AS units FROM plan_units GROUP BY 1, 2, 3;
-- 5. the lines: the base fee rounded once (half to even), each meter's overage over its plans' included units.
-- The requests' plans and units are tables of their own, analyzed: as CTEs the planner, blind to how many requests
-- they hold, merge-joined units to plans on (meter, plan) alone, comparing every request's rows with every other's
-- (more than 300 s for a rebuild's 131k requests, against about 1 s).
CREATE TABLE {stage}.req_plan AS
SELECT d.req, d.plan, d.plan_days, d.days, r.month, r.q, r.meter
FROM {stage}.req_plan_days d JOIN {stage}.price_req r USING (req) WHERE d.plan IS NOT NULL;
ANALYZE {stage}.req_plan;  -- temporary tables are never analyzed by autovacuum: the joins below need counts
ANALYZE {stage}.req_units;
ANALYZE {stage}.req_price_meter;
CREATE TABLE {stage}.price_line AS
WITH fee AS (
    SELECT pd.req, ledger_sum(coalesce(p.base_fee_cents, 0) * pd.plan_days) AS num, min(pd.days) AS days
    FROM {stage}.req_plan pd
    LEFT JOIN {stage}.req_price p ON p.plan = pd.plan AND p.month = pd.month AND p.q = pd.q
    WHERE pd.meter IS NULL
    GROUP BY pd.req
), meters AS (
    SELECT req, meter FROM {stage}.req_units
    UNION
    SELECT pd.req, pm.meter FROM {stage}.req_plan pd
    JOIN {stage}.req_price_meter pm ON pm.plan = pd.plan AND pm.month = pd.month AND pm.q = pd.q
    WHERE pd.meter IS NULL OR pm.meter = pd.meter
), per_plan AS (
    SELECT m.req, m.meter, coalesce(u.units, 0) AS units, pm.unit_price_cents,
           pm.included_units * pd.plan_days / pd.days AS included_units    -- floor: integers >= 0
    FROM meters m
    JOIN {stage}.req_plan pd ON pd.req = m.req
    LEFT JOIN {stage}.req_units u ON u.req = m.req AND u.meter = m.meter AND u.plan = pd.plan
    LEFT JOIN {stage}.req_price_meter pm
           ON pm.plan = pd.plan AND pm.month = pd.month AND pm.q = pd.q AND pm.meter = m.meter
)
SELECT req, meter,
       coalesce(sum(greatest(0, units - included_units) * unit_price_cents), 0)::bigint AS amount_cents,
       ledger_sum(included_units) AS included_units,
       ledger_sum(greatest(0, units - included_units)) AS overage_units,
       coalesce(sum(units) FILTER (WHERE included_units IS NULL), 0)::bigint AS unpriced_units
FROM per_plan
GROUP BY req, meter
UNION ALL
SELECT req, '', CASE WHEN 2 * (num % days) > days THEN num / days + 1
                     WHEN 2 * (num % days) = days THEN num / days + (num / days) % 2
                     ELSE num / days END,
       NULL, NULL, 0
FROM fee;
