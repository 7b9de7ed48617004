-- grain: one row per closed month (its first PeriodClosed fact); key: month
-- facts read: period_close_facts
-- c(m) of SPEC §4.1: the position of PeriodClosed(m); months absent here are open (c = +inf).
-- read model: finance
-- depends on: none
-- rebuild: fill, analyze
-- increment: recompute whole (delete, fill)
-- increment on: identity_link_facts, period_close_facts
-- @create
CREATE TABLE {schema}.period_close (
    month          text PRIMARY KEY,          -- YYYY-MM
    month_start    timestamp NOT NULL,        -- first instant, UTC wall clock
    close_position bigint NOT NULL
);
-- @delete
DELETE FROM {schema}.period_close;
-- @fill
INSERT INTO {schema}.period_close (month, month_start, close_position)
SELECT month, (month || '-01')::timestamp, min(position)
FROM period_close_facts
WHERE position <= {head}
GROUP BY month;
