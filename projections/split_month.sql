-- grain: one row per customer x month that one of the customer's attribute facts takes effect strictly inside;
--        key: (customer_id, month)
-- facts read: attribute_facts (through attribute_key)
-- The customer-months whose days may have more than one plan, as known at any position: a fact effective at an
-- instant after the month's first starts a version inside it (SPEC §4.0, daily_prorated). The set only grows
-- (facts are never taken back), so a month is in it for every pricing point q at or after first_position, the
-- first such fact's position. usage_on_time_day keeps these customer-months' on-time units by day.
-- read model: finance
-- depends on: attribute_key
-- rebuild: fill
-- increment: add in place (fill)
-- increment on: attribute_facts
-- @create
CREATE TABLE {schema}.split_month (
    customer_id    text NOT NULL,
    month          text NOT NULL,
    first_position bigint NOT NULL,
    PRIMARY KEY (customer_id, month)
);
-- @fill
INSERT INTO {schema}.split_month
SELECT customer_id, to_char(effective_from AT TIME ZONE 'UTC', 'YYYY-MM'), min(position)
FROM {schema}.attribute_key
WHERE position > {checkpoint} AND position <= {head}
  AND effective_from AT TIME ZONE 'UTC' <> date_trunc('month', effective_from AT TIME ZONE 'UTC')
GROUP BY 1, 2
ON CONFLICT (customer_id, month) DO NOTHING;   -- split before: its first position stands
