-- grain: none: SQL functions the read models share (a rule used in several places, written once); key: none
-- facts read: none
-- Created with the read models' tables; plain SQL expressions, which the planner inlines into each query that
-- calls them (no call per row). Their bodies name no schema: a rebuild's schema is renamed when it is swapped in.
-- read model: rules
-- depends on: none
-- rebuild: none
-- increment: none
-- @create
-- A meter line priced under one plan (SPEC §4.3): the units over the plan's included units, null when the plan's
-- price does not list the meter (LISTED false) ...
CREATE FUNCTION {schema}.line_overage_units(units bigint, listed boolean, included_units bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN listed THEN greatest(0, units - included_units) END $$;
-- ... and their expected cents: 0 for a meter the price does not list when the customer-month has a plan, null
-- without a plan.
CREATE FUNCTION {schema}.line_expected_cents(overage_units bigint, listed boolean, unit_price_cents bigint,
                                             has_plan boolean)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN listed THEN overage_units * unit_price_cents WHEN has_plan THEN 0 END $$;
