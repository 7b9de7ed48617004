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
-- How many customer-months the invoices cover, for the semi-joins of the customer-month-meter exceptions: from the
-- two columns' own statistics the planner guessed 150k of 1.2M (200k customers, six months), and de-duplicated the
-- whole table before joining an increment's 13k changed rows to it (1.0 s of a 2.3 s increment, wide benchmark
-- shape). With these it does not; with an increment's page cost (increment.py) it probes the index (0.1 s).
CREATE STATISTICS {schema}.invoice_resolved_customer_months (ndistinct) ON customer_id, period
    FROM {schema}.invoice_resolved;
-- @delete
WITH gone AS (
    DELETE FROM {schema}.invoice_resolved t WHERE {inv[t.invoice_id]} RETURNING t.customer_id, t.period
)
INSERT INTO {stage}.scope_cm SELECT DISTINCT customer_id, period FROM gone WHERE customer_id IS NOT NULL;
-- @fill
-- The typed rows of the invoices and their lines (migration 0080): no JSON is decoded here. The usage lines per
-- meter go to a stage table for invoice_meter next.
DROP TABLE IF EXISTS {stage}.invoice_line_stage;
CREATE TABLE {stage}.invoice_line_stage AS
SELECT invoice_id, meter AS usage_meter, ledger_sum(quantity) AS quantity, sum(amount_cents)::bigint AS amount_cents
FROM invoice_line_facts
WHERE kind = 'usage' AND position <= {head} AND {inv[invoice_id]}
GROUP BY 1, 2;
INSERT INTO {schema}.invoice_resolved
SELECT i.invoice_id, i.position, i.source, i.source_customer_id, r.customer_id, i.period, i.issued_at,
       i.total_cents, i.lines_cents
FROM invoice_facts i
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
