-- grain: one row per customer x month with on-time usage facts; key: (customer_id, month)
-- facts read: usage_facts, identity_link_facts, period_close_facts (all through usage_on_time)
-- Sales' view of adoption, from Finance's on-time usage (usage_on_time, SPEC §4.1), so the two agree to the unit:
-- a fact of a closed month counts when its position < c(m) and its source id resolves at event_time with the links
-- at positions < c(m); every attributed fact of an open month counts, for the customer resolved with every link
-- known now. A fact with quantity 0 makes a customer-month exist (as it does in customer_month) but makes no day
-- active, no meter used and no first/last usage instant.
--   active_days          distinct UTC days with units > 0 (usage_on_time.day_mask: quantities are never negative,
--                        so a day has units > 0 exactly when one of its facts has quantity > 0)
--   meters_used          meters with units > 0
--   usage_units          on-time units, all meters
--   first/last_usage_at  the first/last event_time of a fact with units > 0
--   units_mom_pct        100 x (usage_units - previous calendar month's) / previous month's, one decimal; empty
--                        when the previous month has no row or 0 units
-- {adopt[c, m]} is the scope: every customer-month in a full build; incrementally, the customer-months whose
-- usage_on_time rows changed since the risk views' checkpoint (adoption_pending, written by usage_on_time's
-- incremental sections, consumed by @scope). A close changes no usage_on_time row, hence no adoption row.
-- read model: risk
-- depends on: usage_on_time
-- rebuild: fill
-- increment: refill scope (scope, delete, fill, next)
-- @create
CREATE TABLE {schema}.adoption (
    customer_id    text NOT NULL,
    month          text NOT NULL,               -- YYYY-MM
    active_days    integer NOT NULL,
    meters_used    integer NOT NULL,
    usage_units    bigint NOT NULL,
    units_mom_pct  numeric,
    first_usage_at timestamptz,
    last_usage_at  timestamptz,
    PRIMARY KEY (customer_id, month)
);
CREATE TABLE {schema}.adoption_pending (     -- customer-months to derive again; empty whenever the views are current
    customer_id text NOT NULL,
    month       text NOT NULL
);
-- @scope
DROP TABLE IF EXISTS {stage}.adoption_scope;
CREATE TEMP TABLE {stage}.adoption_scope ON COMMIT DROP AS
SELECT DISTINCT customer_id, month FROM {schema}.adoption_pending;
ANALYZE {stage}.adoption_scope;
DELETE FROM {schema}.adoption_pending;
-- A scope under a twentieth of the rows reads usage_on_time through its key, not whole (the planner takes every
-- customer-month for equally likely; reset by @next).
SELECT set_config('enable_seqscan', CASE WHEN (SELECT count(*) FROM {stage}.adoption_scope) * 20
                                              < (SELECT count(*) FROM {schema}.adoption) THEN 'off' ELSE 'on' END, true);
-- @delete
DELETE FROM {schema}.adoption WHERE {adopt[customer_id, month]};
-- @fill
-- The scope's rows from usage_on_time; the previous month's usage_units from the same statement or, outside the
-- scope, from the rows in place (the scope's own rows were deleted first).
INSERT INTO {schema}.adoption
WITH meter AS (
    SELECT customer_id, month, meter, ledger_sum(units) AS units, bit_or(day_mask) AS day_mask,
           min(first_usage_at) AS first_usage_at, max(last_usage_at) AS last_usage_at
    FROM {schema}.usage_on_time
    WHERE {adopt[customer_id, month]}
    GROUP BY customer_id, month, meter
), cm AS (
    SELECT customer_id, month, bit_count(bit_or(day_mask)::bit(32))::integer AS active_days,
           count(*) FILTER (WHERE units > 0)::integer AS meters_used, ledger_sum(units) AS usage_units,
           min(first_usage_at) AS first_usage_at, max(last_usage_at) AS last_usage_at,
           to_char(to_date(month, 'YYYY-MM') - interval '1 month', 'YYYY-MM') AS previous_month
    FROM meter
    GROUP BY customer_id, month
), paired AS (     -- the previous calendar month's units when it is in the scope too
    SELECT *, CASE WHEN lag(month) OVER w = previous_month THEN lag(usage_units) OVER w END AS previous_units
    FROM cm
    WINDOW w AS (PARTITION BY customer_id ORDER BY month)
)
SELECT c.customer_id, c.month, c.active_days, c.meters_used, c.usage_units,
       CASE WHEN coalesce(c.previous_units, kept.usage_units) > 0
            THEN round((c.usage_units - coalesce(c.previous_units, kept.usage_units)) * 100.0
                       / coalesce(c.previous_units, kept.usage_units), 1) END,
       c.first_usage_at, c.last_usage_at
FROM paired c
LEFT JOIN {schema}.adoption kept ON kept.customer_id = c.customer_id AND kept.month = c.previous_month;
-- @next
-- The month after a scoped row, outside the scope: its units_mom_pct follows the new previous month. Both rows are
-- read through the key (OFFSET 0 keeps the subquery a per-row index read), and only the rows whose value changes
-- are joined for the update: a join of the scope's months with the table read the whole table each increment.
UPDATE {schema}.adoption a
SET units_mom_pct = x.units_mom_pct
FROM (SELECT n.customer_id, n.month, cur.units_mom_pct
      FROM (SELECT DISTINCT customer_id, to_char(to_date(month, 'YYYY-MM') + interval '1 month', 'YYYY-MM') AS month
            FROM {stage}.adoption_scope) n
      CROSS JOIN LATERAL (SELECT CASE WHEN p.usage_units > 0
                                      THEN round((a.usage_units - p.usage_units) * 100.0 / p.usage_units, 1)
                                 END AS units_mom_pct, a.units_mom_pct AS kept
                          FROM {schema}.adoption a
                          LEFT JOIN {schema}.adoption p
                                 ON p.customer_id = a.customer_id
                                AND p.month = to_char(to_date(a.month, 'YYYY-MM') - interval '1 month', 'YYYY-MM')
                          WHERE a.customer_id = n.customer_id AND a.month = n.month
                          OFFSET 0) cur
      WHERE NOT {adopt[n.customer_id, n.month]}
        AND cur.units_mom_pct IS DISTINCT FROM cur.kept) x
WHERE a.customer_id = x.customer_id AND a.month = x.month;
RESET enable_seqscan;
