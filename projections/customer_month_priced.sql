-- grain: one row per line of a customer-month priced day by day; key: (customer_id, month, meter)
-- facts read: through pricing.price (attribute, price and usage facts) and customer_month_attrs
-- SPEC §4.0 under daily_prorated: the customer-months whose calculation at their pricing point is daily_prorated and
-- whose days may have more than one plan (customer_month_attrs.is_split), priced as known at that point on their
-- on-time units. meter '' is the base fee line; it is present exactly when some day of the month has a plan.
-- Every other customer-month has one plan all month, priced by plan_month_fee and plan_month_meter alike under
-- either rule (with one plan all month, daily_prorated equals month_start).
-- read model: finance
-- depends on: attribute_key, customer_month_attrs, dim_customer, usage_late, usage_on_time, usage_on_time_day
-- rebuild: fill, analyze
-- increment: refill scope (delete, fill)
-- increment on: every run
-- recomputed whole on: calculation_promoted_facts
-- @create
CREATE TABLE {schema}.customer_month_priced (
    customer_id    text NOT NULL,
    month          text NOT NULL,
    meter          text NOT NULL,   -- '' for the base fee
    amount_cents   bigint NOT NULL,
    included_units bigint,
    overage_units  bigint,
    unpriced_units bigint NOT NULL
);
-- @delete
DELETE FROM {schema}.customer_month_priced WHERE {cm[customer_id, month]};
-- @fill
DROP TABLE IF EXISTS {stage}.price_req;
CREATE TABLE {stage}.price_req AS
SELECT row_number() OVER () AS req, customer_id, month, coalesce(priced_at, {head}) AS q, plan_rule, -1::bigint AS late_through,
       NULL::text AS meter
FROM {schema}.customer_month_attrs
WHERE is_split AND plan_rule = 'daily_prorated' AND {cm[customer_id, month]};
-- @include pricing.price
INSERT INTO {schema}.customer_month_priced
SELECT r.customer_id, r.month, l.meter, l.amount_cents, l.included_units, l.overage_units, l.unpriced_units
FROM {stage}.price_line l JOIN {stage}.price_req r USING (req);
-- @index
ALTER TABLE {schema}.customer_month_priced ADD PRIMARY KEY (customer_id, month, meter);
