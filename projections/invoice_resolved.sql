-- grain: one row per invoice; key: invoice_id
-- facts read: invoice_facts, invoice_line_facts, identity_link_facts (through link_range)
-- SPEC §3.5: the invoice's customer is its source id resolved at issued_at, using every link known now
-- (the last link version); null while unattributed. lines_cents is the sum of its lines' amount_cents.
-- read model: finance
-- depends on: link_range
-- rebuild: fill, analyze
-- increment: refill scope (delete, fill, touched)
-- increment on: invoice_facts, identity_link_facts
-- @create
CREATE TABLE {schema}.invoice_resolved (
    invoice_id         text NOT NULL,
    position           bigint NOT NULL,
    source             text NOT NULL,
    source_customer_id text NOT NULL,
    customer_id        text,
    period             text NOT NULL,
    issued_at          timestamptz NOT NULL,
    total_cents        bigint NOT NULL,
    lines_cents        bigint NOT NULL
);
-- @delete
WITH gone AS (
    DELETE FROM {schema}.invoice_resolved t WHERE {inv[t.invoice_id]} RETURNING t.customer_id, t.period
)
INSERT INTO {stage}.scope_cm SELECT DISTINCT customer_id, period FROM gone WHERE customer_id IS NOT NULL;
-- @fill
-- The lines are read once (invoice_line_facts parses each invoice's JSON): per invoice and usage meter, for
-- lines_cents here and for invoice_meter next.
DROP TABLE IF EXISTS {stage}.invoice_line_stage;
CREATE TABLE {stage}.invoice_line_stage AS
SELECT invoice_id, CASE WHEN kind = 'usage' THEN meter END AS usage_meter,
       sum(quantity)::bigint AS quantity, sum(amount_cents)::bigint AS amount_cents
FROM invoice_line_facts
WHERE position <= {head} AND {inv[invoice_id]}
GROUP BY 1, 2;
INSERT INTO {schema}.invoice_resolved
SELECT i.invoice_id, i.position, i.source, i.source_customer_id, r.customer_id, i.period, i.issued_at,
       i.total_cents, coalesce(l.lines_cents, 0)
FROM invoice_facts i
LEFT JOIN (SELECT invoice_id, sum(amount_cents)::bigint AS lines_cents
           FROM {stage}.invoice_line_stage
           GROUP BY invoice_id) l ON l.invoice_id = i.invoice_id
LEFT JOIN {schema}.link_range r
       ON r.source = i.source AND r.source_customer_id = i.source_customer_id
      AND r.known_through = 9223372036854775807
      AND r.valid_from <= i.issued_at AND i.issued_at < r.valid_to
WHERE i.position <= {head} AND {inv[i.invoice_id]};
-- @touched
INSERT INTO {stage}.scope_cm
SELECT DISTINCT customer_id, period FROM {schema}.invoice_resolved
WHERE customer_id IS NOT NULL AND {inv[invoice_id]};
-- @index
ALTER TABLE {schema}.invoice_resolved ADD PRIMARY KEY (invoice_id);
CREATE INDEX ON {schema}.invoice_resolved (customer_id, period);  -- the scoped refills' customer-months
