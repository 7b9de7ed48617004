-- grain: one row per customer x original_month x meter x posting_month; key: (customer_id, original_month, meter, posting_month)
-- facts read: usage_facts (through usage_late, usage_on_time), attribute_facts (through customer_month_attrs and
--             attribute_key),
--             price_facts (through plan_month_meter)
-- SPEC §4.2: each late unit priced at the margin of its ORIGINAL month, with the plan, prices and calculation as
-- known at its attribution position a: the sum over the distinct a of amount(a) - amount(a - 1) (pricing.price);
-- 0 without a plan or for an unpriced meter. first/last_position are the facts' attribution positions.
-- read model: finance
-- depends on: attribute_key, calc_in_force, customer_month_attrs, dim_customer, usage_late, usage_on_time, usage_on_time_day
-- rebuild: fill
-- increment: refill scope (delete, fill, touched)
-- increment on: every run
-- recomputed whole on: calculation_promoted_facts
-- @create
CREATE TABLE {schema}.late_adjustments (
    customer_id    text NOT NULL,
    original_month text NOT NULL,
    meter          text NOT NULL,
    posting_month  text NOT NULL,
    units          bigint NOT NULL,
    amount_cents   bigint NOT NULL,
    event_count    bigint NOT NULL,
    first_position bigint NOT NULL,
    last_position  bigint NOT NULL
);
-- @delete
WITH gone AS (
    DELETE FROM {schema}.late_adjustments WHERE {cm[customer_id, original_month]}
    RETURNING customer_id, posting_month
)
INSERT INTO {stage}.scope_cm_posting SELECT DISTINCT customer_id, posting_month FROM gone;
-- @fill
DROP TABLE IF EXISTS {stage}.late_segment, {stage}.price_req;
CREATE TABLE {stage}.late_segment AS
WITH late AS (
    SELECT customer_id, month, meter, posting_month, quantity, attribution_position AS a
    FROM {schema}.usage_late
    WHERE customer_id IS NOT NULL AND {cm[customer_id, month]}
), global_change AS (   -- spans of positions with one set of price facts and one calculation in force
    SELECT position AS from_position,
           coalesce(lead(position) OVER (ORDER BY position), 9223372036854775807) AS through_position
    FROM (SELECT position FROM price_facts WHERE position <= {head}
          UNION SELECT from_position FROM {schema}.calc_in_force) c
), customer_change AS ( -- spans of positions with one set of each customer's attribute facts
    SELECT customer_id, position AS from_position,
           coalesce(lead(position) OVER (PARTITION BY customer_id ORDER BY position), 9223372036854775807)
               AS through_position
    FROM (SELECT customer_id, position FROM {schema}.attribute_key
          WHERE position <= {head} AND customer_id IN (SELECT customer_id FROM late)
          UNION ALL SELECT DISTINCT customer_id, 0 FROM late) c
)
-- A segment: the late facts of one group attributed while the customer's pricing stood still (q: the last
-- position that could change it). Their margins add up to amount(last a) - amount(first a - 1) at q.
SELECT l.customer_id, l.month, l.meter, l.posting_month, greatest(g.from_position, c.from_position) AS q,
       ledger_sum(l.quantity) AS units, count(*) AS event_count, min(l.a) AS first_position,
       max(l.a) AS last_position
FROM late l
JOIN global_change g ON l.a >= g.from_position AND l.a < g.through_position
JOIN customer_change c ON c.customer_id = l.customer_id AND l.a >= c.from_position AND l.a < c.through_position
GROUP BY 1, 2, 3, 4, 5;
-- Each segment's two amounts are its meter's line alone (a request with a meter): a meter's line reads only its own
-- units and prices, and the base fee is the same at both ends of a segment (one q).
CREATE TABLE {stage}.price_req AS
SELECT row_number() OVER () AS req, r.*, f.plan_rule
FROM (SELECT customer_id, month, q, last_position AS late_through, meter FROM {stage}.late_segment
      UNION SELECT customer_id, month, q, first_position - 1, meter FROM {stage}.late_segment) r
JOIN {schema}.calc_in_force f ON r.q >= f.from_position AND r.q < f.through_position;
-- @include pricing.price
INSERT INTO {schema}.late_adjustments
SELECT s.customer_id, s.month, s.meter, s.posting_month, ledger_sum(s.units),
       sum(coalesce(after.amount_cents, 0) - coalesce(before.amount_cents, 0))::bigint,
       ledger_sum(s.event_count), min(s.first_position), max(s.last_position)
FROM {stage}.late_segment s
JOIN {stage}.price_req ra ON ra.customer_id = s.customer_id AND ra.month = s.month AND ra.q = s.q
                         AND ra.late_through = s.last_position AND ra.meter = s.meter
JOIN {stage}.price_req rb ON rb.customer_id = s.customer_id AND rb.month = s.month AND rb.q = s.q
                         AND rb.late_through = s.first_position - 1 AND rb.meter = s.meter
LEFT JOIN {stage}.price_line after ON after.req = ra.req AND after.meter = s.meter
LEFT JOIN {stage}.price_line before ON before.req = rb.req AND before.meter = s.meter
GROUP BY 1, 2, 3, 4;
-- @touched
INSERT INTO {stage}.scope_cm_posting
SELECT DISTINCT customer_id, posting_month FROM {schema}.late_adjustments WHERE {cm[customer_id, original_month]};
-- late postings moved by this run change the customer_month rows of their posting months
INSERT INTO {stage}.scope_cm SELECT customer_id, month FROM {stage}.scope_cm_posting;
-- @index
ALTER TABLE {schema}.late_adjustments ADD PRIMARY KEY (customer_id, original_month, meter, posting_month);
CREATE INDEX ON {schema}.late_adjustments (customer_id, posting_month);  -- the scoped refills' posting months
