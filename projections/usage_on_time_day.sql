-- grain: one row per customer x month x meter x source id x UTC day over the on-time usage facts of the
--        customer-months of split_month; key: (customer_id, month, meter, source, source_customer_id, day)
-- facts read: usage_facts (through usage_on_time, usage_fact_resolved, usage_batch_stage), identity_link_facts
--             (through link_range), attribute_facts (through split_month)
-- usage_on_time by day, for the customer-months whose days may have more than one plan: what the pricing rule
-- (pricing.price, step 4) sums over each plan's days under daily_prorated, for the read models, the restatements
-- and `ledger calc diff`, instead of reading the facts again. Each row's units are those of usage_on_time's row of
-- the same key, split by the UTC day of the facts' event_time. Not exported.
-- A customer-month split before the checkpoint follows usage_on_time (its relinked rows deleted and its staged
-- on-time facts added); one that a new attribute fact splits is filled whole from its on-time facts (@fill, whose
-- rebuild form is every split customer-month).
-- read model: finance
-- depends on: split_month, usage_on_time, usage_fact_resolved, usage_batch_stage, period_close, link_range
-- rebuild: fill, analyze
-- increment: refill scope (staged, delete, merge, fill)
-- increment on: usage_facts, identity_link_facts, attribute_facts
-- added in place: merge_batch
-- @create
CREATE TABLE {schema}.usage_on_time_day (
    customer_id        text NOT NULL,
    month              text NOT NULL,
    meter              text NOT NULL,
    source             text NOT NULL,
    source_customer_id text NOT NULL,
    day                smallint NOT NULL,   -- 1..31, UTC
    units              bigint NOT NULL,
    PRIMARY KEY (customer_id, month, meter, source, source_customer_id, day)
);
-- @fill
-- The customer-months split after the checkpoint (a rebuild: every one): their on-time facts, read once month by
-- month through usage_facts' BRIN index on event_time and matched to usage_on_time's source ids by hash (a source
-- id's facts of one month lie anywhere in the store: never a position range per source id). A fact is on time for
-- the customer its source id resolves to at event_time with the links of the month's cutoff version.
INSERT INTO {schema}.usage_on_time_day
WITH src AS MATERIALIZED (
    SELECT o.customer_id, o.month, o.meter, o.source, o.source_customer_id, o.first_position, o.last_position,
           coalesce(pc.close_position, 9223372036854775807) AS cutoff
    FROM {schema}.split_month s
    JOIN {schema}.usage_on_time o ON o.customer_id = s.customer_id AND o.month = s.month
    LEFT JOIN {schema}.period_close pc ON pc.month = o.month
    WHERE s.first_position > {checkpoint}
), f AS MATERIALIZED (    -- a fence: the months' facts of those source ids first
    SELECT mm.month, u.position, u.source, u.source_customer_id, u.meter, u.quantity, u.event_time
    FROM (SELECT DISTINCT month, (month || '-01')::timestamp AT TIME ZONE 'UTC' AS starts,
                 ((month || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC' AS ends
          FROM src) mm
    JOIN usage_facts u ON u.event_time >= mm.starts AND u.event_time < mm.ends
    WHERE u.position <= {head}
      AND (u.source, u.source_customer_id) IN (SELECT source, source_customer_id FROM src)
)
SELECT s.customer_id, s.month, f.meter, f.source, f.source_customer_id,
       extract(day FROM f.event_time AT TIME ZONE 'UTC')::smallint, ledger_sum(f.quantity)
FROM f
JOIN src s
  ON s.month = f.month AND f.source = s.source AND f.source_customer_id = s.source_customer_id AND f.meter = s.meter
 AND f.position >= s.first_position AND f.position <= s.last_position AND f.position < s.cutoff
JOIN {schema}.link_range lr
  ON lr.source = f.source AND lr.source_customer_id = f.source_customer_id
 AND lr.known_after < s.cutoff AND s.cutoff <= lr.known_through
 AND f.event_time >= lr.valid_from AND f.event_time < lr.valid_to AND lr.customer_id = s.customer_id
GROUP BY 1, 2, 3, 4, 5, 6;
-- @staged
-- The facts this run staged one by one (usage_fact_resolved's); when only attribute facts are new there are none,
-- and @merge reads an empty table with the columns it needs.
CREATE TABLE IF NOT EXISTS {stage}.usage_fact_resolved (
    customer_id text, month text, meter text, source text, source_customer_id text, event_time timestamptz,
    quantity bigint, is_on_time boolean
);
-- @delete
-- As usage_on_time's: a relinked source id's rows from the month of its earliest new link on.
DELETE FROM {schema}.usage_on_time_day t
USING {stage}.relink_source r
WHERE t.source = r.source AND t.source_customer_id = r.source_customer_id
  AND t.month >= to_char(r.since AT TIME ZONE 'UTC', 'YYYY-MM');
-- @merge
-- The staged on-time facts of the customer-months split before the checkpoint (@fill reads the others whole).
INSERT INTO {schema}.usage_on_time_day AS t
SELECT f.customer_id, f.month, f.meter, f.source, f.source_customer_id,
       extract(day FROM f.event_time AT TIME ZONE 'UTC')::smallint, ledger_sum(f.quantity)
FROM {stage}.usage_fact_resolved f
JOIN {schema}.split_month s ON s.customer_id = f.customer_id AND s.month = f.month
WHERE f.is_on_time AND s.first_position <= {checkpoint}
GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT (customer_id, month, meter, source, source_customer_id, day)
DO UPDATE SET units = t.units + excluded.units;
-- @merge_batch
-- The fast incremental path (no attribute fact is new): the batch's facts of the source ids whose on-time groups
-- (usage_batch_stage, after its split) reach a split customer-month, resolved as usage_batch_stage resolved them
-- (every link known now, an open month) and added by day.
INSERT INTO {schema}.usage_on_time_day AS t
WITH src AS MATERIALIZED (
    SELECT DISTINCT b.source, b.source_customer_id
    FROM {stage}.usage_batch_stage b
    JOIN {schema}.split_month s ON s.customer_id = b.customer_id AND s.month = b.month
)
SELECT r.customer_id, to_char(f.event_time AT TIME ZONE 'UTC', 'YYYY-MM') AS month, f.meter, f.source,
       f.source_customer_id, extract(day FROM f.event_time AT TIME ZONE 'UTC')::smallint, ledger_sum(f.quantity)
FROM usage_facts f
JOIN src USING (source, source_customer_id)
JOIN {schema}.link_range r
  ON r.source = f.source AND r.source_customer_id = f.source_customer_id
 AND r.known_through = 9223372036854775807
 AND r.valid_from <= f.event_time AND f.event_time < r.valid_to
JOIN {schema}.split_month s
  ON s.customer_id = r.customer_id AND s.month = to_char(f.event_time AT TIME ZONE 'UTC', 'YYYY-MM')
WHERE f.position > {checkpoint} AND f.position <= {head}
  AND to_char(f.event_time AT TIME ZONE 'UTC', 'YYYY-MM') NOT IN (SELECT month FROM {schema}.period_close)
GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT (customer_id, month, meter, source, source_customer_id, day)
DO UPDATE SET units = t.units + excluded.units;
