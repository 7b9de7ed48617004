-- grain: one row per reconciliation exception; key: (kind, invoice_id, customer_id, source, source_customer_id, month, meter)
-- facts read: invoice_facts and invoice_line_facts (through invoice_resolved, customer_month_meter),
--             usage_facts (through usage_on_time, usage_late), attribute_facts and price_facts (through
--             customer_month_attrs, plan_month_meter)
-- SPEC §5. difference = actual - expected; unit says what they count; keys that do not apply to a kind are null.
-- unpriced_meter is priced at the month's pricing point (customer_month_meter.is_unpriced). Scopes for incremental
-- maintenance: customer-month kinds by (customer_id, month), invoice kinds by invoice_id, unattributed usage by
-- source id.
-- read model: finance
-- depends on: customer_month_meter, invoice_resolved, usage_late
-- rebuild: fill
-- increment: refill scope (delete, fill)
-- increment on: every run
-- recomputed whole on: calculation_promoted_facts
-- added in place: add_on_time
-- @create
CREATE TABLE {schema}.exceptions (
    kind               text NOT NULL,
    invoice_id         text,
    customer_id        text,
    source             text,
    source_customer_id text,
    month              text,
    meter              text,
    expected           bigint NOT NULL,
    actual             bigint NOT NULL,
    difference         bigint NOT NULL,
    unit               text NOT NULL      -- what expected, actual and difference count: cents or units
);
-- @delete
DELETE FROM {schema}.exceptions
WHERE kind IN ('billed_vs_metered', 'unpriced_meter') AND {cm[customer_id, month]};
DELETE FROM {schema}.exceptions
WHERE kind IN ('invoice_total_mismatch', 'unattributed_invoice') AND {inv[invoice_id]};
DELETE FROM {schema}.exceptions
WHERE kind = 'unattributed_usage' AND {src[source, source_customer_id]};
-- @fill
INSERT INTO {schema}.exceptions
SELECT 'invoice_total_mismatch', invoice_id, customer_id, NULL, NULL, period, NULL,
       lines_cents, total_cents, total_cents - lines_cents, 'cents'
FROM {schema}.invoice_resolved
WHERE total_cents <> lines_cents AND {inv[invoice_id]};
INSERT INTO {schema}.exceptions
SELECT 'unattributed_invoice', invoice_id, NULL, source, source_customer_id, period, NULL, 0, total_cents, total_cents,
       'cents'
FROM {schema}.invoice_resolved
WHERE customer_id IS NULL AND {inv[invoice_id]};
INSERT INTO {schema}.exceptions
WITH meters AS NOT MATERIALIZED (
    SELECT * FROM {schema}.customer_month_meter m WHERE {cm[m.customer_id, m.month]}
)
-- @include exceptions.meter_kinds
;
INSERT INTO {schema}.exceptions
SELECT 'unattributed_usage', NULL, NULL, source, source_customer_id, month, NULL, 0, sum(quantity), sum(quantity),
       'units'
FROM {schema}.usage_late
WHERE customer_id IS NULL AND {src[source, source_customer_id]}
GROUP BY source, source_customer_id, month;
-- @add_on_time
-- Fast path: the customer-month-meter kinds of the keys whose on-time units grew, from their new values
-- ({stage}.customer_month_meter_change, after customer_month_meter's @add_on_time).
DELETE FROM {schema}.exceptions e
USING {stage}.customer_month_meter_change n
WHERE e.kind IN ('billed_vs_metered', 'unpriced_meter')
  AND {batch_months[e.month]}
  AND e.customer_id = n.customer_id AND e.month = n.month AND e.meter = n.meter;
INSERT INTO {schema}.exceptions
WITH meters AS NOT MATERIALIZED (SELECT * FROM {stage}.customer_month_meter_change)
-- @include exceptions.meter_kinds
;
-- @meter_kinds
-- The two customer-month-meter kinds, written once for the build and the fast path: both name their rows `meters`
-- (customer_month_meter, or its fast path's changed rows), with the columns the kinds read.
SELECT 'billed_vs_metered', NULL, m.customer_id, NULL, NULL, m.month, m.meter,
       m.on_time_units, m.billed_units, m.billed_units - m.on_time_units, 'units'
FROM meters m
WHERE m.on_time_units <> m.billed_units
  AND EXISTS (SELECT 1 FROM {schema}.invoice_resolved i WHERE i.customer_id = m.customer_id AND i.period = m.month)
UNION ALL
SELECT 'unpriced_meter', NULL, m.customer_id, NULL, NULL, m.month, m.meter, 0, m.unpriced_units, m.unpriced_units,
       'units'
FROM meters m
WHERE m.is_unpriced
-- @index
-- For the scoped deletes (each index's predicate is the delete's own kind test, so the planner can use it); no key:
-- the keys that apply differ by kind and may be null. The customer-month kinds' index serves the in-place addition,
-- which probes it for each changed customer-month-meter (batch.py, probing_joins): without it, each batch read the
-- whole table (0.37 s for 12k changed keys among 950k exceptions, wide benchmark shape).
CREATE INDEX ON {schema}.exceptions (customer_id, month, meter) WHERE kind IN ('billed_vs_metered', 'unpriced_meter');
CREATE INDEX ON {schema}.exceptions (invoice_id) WHERE kind IN ('invoice_total_mismatch', 'unattributed_invoice');
CREATE INDEX ON {schema}.exceptions (source, source_customer_id) WHERE kind = 'unattributed_usage';
