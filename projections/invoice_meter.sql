-- grain: one row per invoice x meter of its usage lines; key: (invoice_id, meter)
-- facts read: invoice_line_facts (through invoice_resolved's line stage; customer and period through invoice_resolved)
-- read model: finance
-- depends on: invoice_resolved
-- rebuild: fill
-- increment: refill scope (delete, fill)
-- increment on: invoice_facts, identity_link_facts
-- @create
CREATE TABLE {schema}.invoice_meter (
    invoice_id   text NOT NULL,
    meter        text NOT NULL,
    customer_id  text,
    period       text NOT NULL,
    billed_units bigint NOT NULL,
    billed_cents bigint NOT NULL
);
-- @delete
DELETE FROM {schema}.invoice_meter WHERE {inv[invoice_id]};
-- @fill
INSERT INTO {schema}.invoice_meter
SELECT l.invoice_id, l.usage_meter, i.customer_id, i.period, l.quantity, l.amount_cents
FROM {stage}.invoice_line_stage l
JOIN {schema}.invoice_resolved i ON i.invoice_id = l.invoice_id
WHERE l.usage_meter IS NOT NULL;
-- @index
ALTER TABLE {schema}.invoice_meter ADD PRIMARY KEY (invoice_id, meter);
CREATE INDEX ON {schema}.invoice_meter (customer_id, period);  -- the scoped refills' customer-months
