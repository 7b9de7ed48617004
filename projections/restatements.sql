-- grain: one row per customer x original_month x meter x posting_month x cause;
--        key: (customer_id, original_month, meter, posting_month, cause)
-- facts read: attribute_facts (through attribute_key), price_facts, calculation_promoted_facts (the causes), and
--             through pricing.price the usage, attribute and price facts of the months they restate
-- SPEC §4.6: a position q after a month m closed that holds an attribute fact, a price fact or a promotion may
-- change an amount of m: each line whose amount(q) - amount(q - 1) is not 0 posts that change to the earliest open
-- month at q. meter '' is the base fee. A restatement depends only on the facts at positions <= q, so an increment
-- adds the restatements of its new positions (q > {checkpoint}) to the rows that stand.
-- Candidates (a superset; the pricing decides): for an attribute fact, its customer's closed months; for a price
-- fact, the closed months it may reach of every customer who ever had its plan; for a promotion, the closed months
-- whose days may have more than one plan (only there do the two plan rules differ).
-- read model: finance
-- depends on: attribute_key, calc_in_force, dim_customer, period_close, posting_window, split_month, usage_late, usage_on_time, usage_on_time_day
-- rebuild: fill, analyze
-- increment: refill scope (fill, touched)
-- increment on: attribute_facts, price_facts, calculation_promoted_facts
-- @create
CREATE TABLE {schema}.restatements (
    customer_id    text NOT NULL,
    original_month text NOT NULL,
    meter          text NOT NULL,   -- '' for the base fee
    posting_month  text NOT NULL,
    cause          text NOT NULL,   -- repricing | recalculation
    amount_cents   bigint NOT NULL,
    change_count   bigint NOT NULL,
    first_position bigint NOT NULL,
    last_position  bigint NOT NULL
);
-- @fill
DROP TABLE IF EXISTS {stage}.restatement_candidate, {stage}.price_req, {stage}.restatement_change;
CREATE TABLE {stage}.restatement_candidate AS
WITH cause AS (
    SELECT position, customer_id, NULL::text AS plan, NULL::text AS effective_month, 'repricing' AS cause
    FROM {schema}.attribute_key WHERE position > {checkpoint} AND position <= {head}
    UNION ALL
    SELECT position, NULL, plan, effective_month, 'repricing'
    FROM price_facts WHERE position > {checkpoint} AND position <= {head}
    UNION ALL
    SELECT from_position, NULL, NULL, NULL, 'recalculation'
    FROM {schema}.calc_in_force WHERE from_position > {checkpoint} AND from_position <= {head}
), closed AS (      -- the months closed before each cause, and where its changes post
    SELECT c.*, pc.month, w.posting_month
    FROM cause c
    JOIN {schema}.period_close pc ON pc.close_position < c.position
    JOIN {schema}.posting_window w ON c.position > w.after_position AND c.position <= w.through_position
)
SELECT c.position, c.customer_id, c.month, c.posting_month, c.cause
FROM closed c WHERE c.customer_id IS NOT NULL
UNION
SELECT c.position, a.customer_id, c.month, c.posting_month, c.cause
FROM closed c
JOIN {schema}.attribute_key a ON a.attrs ->> 'plan' = c.plan AND a.position <= {head}
WHERE c.plan IS NOT NULL AND c.effective_month <= c.month
UNION
SELECT c.position, s.customer_id, c.month, c.posting_month, c.cause
FROM closed c
JOIN {schema}.split_month s ON s.month = c.month AND s.first_position <= {head}
WHERE c.cause = 'recalculation';
CREATE TABLE {stage}.price_req AS
SELECT row_number() OVER () AS req, r.*, f.plan_rule, NULL::text AS meter
FROM (SELECT DISTINCT position AS cause_position, customer_id, month, position AS q, position AS late_through
      FROM {stage}.restatement_candidate
      UNION ALL
      SELECT DISTINCT position, customer_id, month, position - 1, position - 1
      FROM {stage}.restatement_candidate) r
JOIN {schema}.calc_in_force f ON r.q >= f.from_position AND r.q < f.through_position;
-- @include pricing.price
CREATE TABLE {stage}.restatement_change AS
WITH line AS (
    SELECT r.cause_position, r.customer_id, r.month, l.meter,
           sum(CASE WHEN r.q = r.cause_position THEN l.amount_cents ELSE -l.amount_cents END)::bigint AS change
    FROM {stage}.price_line l JOIN {stage}.price_req r USING (req)
    GROUP BY 1, 2, 3, 4
)
SELECT c.customer_id, c.month AS original_month, l.meter, c.posting_month, c.cause, l.change, c.position
FROM line l
JOIN (SELECT DISTINCT position, customer_id, month, posting_month, cause FROM {stage}.restatement_candidate) c
  ON c.position = l.cause_position AND c.customer_id = l.customer_id AND c.month = l.month
WHERE l.change <> 0;
MERGE INTO {schema}.restatements t
USING (SELECT customer_id, original_month, meter, posting_month, cause, sum(change)::bigint AS amount_cents,
              count(*) AS change_count, min(position) AS first_position, max(position) AS last_position
       FROM {stage}.restatement_change GROUP BY 1, 2, 3, 4, 5) n
   ON t.customer_id = n.customer_id AND t.original_month = n.original_month AND t.meter = n.meter
  AND t.posting_month = n.posting_month AND t.cause = n.cause
WHEN MATCHED THEN
    UPDATE SET amount_cents = t.amount_cents + n.amount_cents, change_count = t.change_count + n.change_count,
               first_position = least(t.first_position, n.first_position),
               last_position = greatest(t.last_position, n.last_position)
WHEN NOT MATCHED THEN
    INSERT VALUES (n.customer_id, n.original_month, n.meter, n.posting_month, n.cause, n.amount_cents,
                   n.change_count, n.first_position, n.last_position);
-- @touched
INSERT INTO {stage}.scope_cm SELECT DISTINCT customer_id, posting_month FROM {stage}.restatement_change;
-- @index
ALTER TABLE {schema}.restatements ADD PRIMARY KEY (customer_id, original_month, meter, posting_month, cause);
