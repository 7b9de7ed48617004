-- grain: one row per span of positions over which one calculation is in force; key: from_position
-- facts read: calculation_promoted_facts
-- SPEC §3.8: every store starts with v1 (month_start) in force; a CalculationPromoted at position P puts its
-- calculation in force from P on. The calculation in force at q is the row with from_position <= q < through_position.
-- Small: always recomputed whole.
-- read model: finance
-- depends on: none
-- rebuild: fill
-- increment: recompute whole (delete, fill)
-- increment on: calculation_promoted_facts
-- @create
CREATE TABLE {schema}.calc_in_force (
    from_position    bigint PRIMARY KEY,
    through_position bigint NOT NULL,
    name             text NOT NULL,
    plan_rule        text NOT NULL
);
-- @delete
DELETE FROM {schema}.calc_in_force;
-- @fill
INSERT INTO {schema}.calc_in_force
WITH promotion AS (
    SELECT 0::bigint AS position, 'v1' AS name, 'month_start' AS plan_rule
    UNION ALL
    SELECT position, name, plan_rule FROM calculation_promoted_facts WHERE position <= {head}
)
SELECT position, coalesce(lead(position) OVER (ORDER BY position), 9223372036854775807), name, plan_rule
FROM promotion;
