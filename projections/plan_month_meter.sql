-- grain: one row per plan x month x meter the month's price lists; key: (plan, month, meter)
-- facts read: price_facts (through plan_month_fee)
-- A meter absent here is unpriced for that plan-month: overage 0, reported as unpriced_meter (SPEC §3.4, §5).
-- read model: finance
-- depends on: plan_month_fee
-- rebuild: fill, analyze
-- increment: recompute whole (delete, fill)
-- increment on: every run
-- added in place: delete, fill
-- @create
CREATE TABLE {schema}.plan_month_meter (
    plan             text NOT NULL,
    month            text NOT NULL,
    meter            text NOT NULL,
    included_units   bigint NOT NULL,
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (plan, month, meter)
);
-- @delete
DELETE FROM {schema}.plan_month_meter;
-- @fill
INSERT INTO {schema}.plan_month_meter
SELECT f.plan, f.month, m.key, (m.value ->> 'included_units')::bigint, (m.value ->> 'unit_price_cents')::bigint
FROM {schema}.plan_month_fee f
JOIN price_facts p ON p.position = f.price_position
CROSS JOIN LATERAL jsonb_each(p.meters) m;
