-- Identity links, attribute changes, invoices and invoice lines, typed at append: one row per fact (per line) beside
-- its events row, written by a trigger on ledger_events in the same statement, so every way of appending (commands,
-- bulk files, the stream) fills them and none can skip them. Their views read these rows instead of decoding each
-- event's JSON on every read. Measured reason (docs/benchmarks.md): decoding the JSON of 1.2M invoices took
-- 8.7–10.5 s of a full build on the wide shape, and link_range and attribute_key decoded every link and attribute
-- fact again; typed, they are read like usage_facts.
-- The JSON in ledger_events stays the fact (the hash chain covers it): `ledger verify` recomputes these rows from
-- it and names the first position that differs.
CREATE TABLE link_fact_rows (
    position bigint PRIMARY KEY,
    source text NOT NULL,
    source_customer_id text NOT NULL,
    customer_id text NOT NULL,
    effective_from timestamptz NOT NULL
);
-- The lookups of one customer or one source id (trace, the API and the pages): index probes, not scans.
CREATE INDEX link_fact_rows_customer_id_idx ON link_fact_rows (customer_id);
CREATE INDEX link_fact_rows_source_idx ON link_fact_rows (source, source_customer_id);

CREATE TABLE attribute_fact_rows (
    position bigint PRIMARY KEY,
    customer_id text NOT NULL,
    effective_from timestamptz,
    attrs jsonb  -- only the attributes the fact names; a JSON null clears
);
CREATE INDEX attribute_fact_rows_customer_id_idx ON attribute_fact_rows (customer_id);

CREATE TABLE invoice_fact_rows (
    position bigint PRIMARY KEY,
    invoice_id text NOT NULL,
    source text NOT NULL,
    source_customer_id text NOT NULL,
    period text NOT NULL,
    issued_at timestamptz NOT NULL,
    currency text NOT NULL,
    total_cents bigint NOT NULL,
    lines_cents bigint NOT NULL  -- the sum of its lines' amount_cents (0 without lines)
);
CREATE INDEX invoice_fact_rows_invoice_id_idx ON invoice_fact_rows (invoice_id);

CREATE TABLE invoice_line_rows (
    position bigint NOT NULL,
    line_no int NOT NULL,
    invoice_id text NOT NULL,
    line_id text,
    kind text,
    meter text,
    quantity bigint,
    amount_cents bigint,
    PRIMARY KEY (position, line_no)
);
CREATE INDEX invoice_line_rows_invoice_id_idx ON invoice_line_rows (invoice_id);

-- The decoding, once for every path: the same expressions the JSON views of migrations 0003 and 0070 used.
CREATE FUNCTION ledger_type_facts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO link_fact_rows (position, source, source_customer_id, customer_id, effective_from)
    SELECT e.notification_id, s ->> 'source', s ->> 'source_customer_id', s ->> 'customer_id',
           (s ->> 'effective_from')::timestamptz
    FROM appended e, LATERAL ledger_state(e.state) s
    WHERE e.topic = 'ledger.CustomerIdentityLinked';

    INSERT INTO attribute_fact_rows (position, customer_id, effective_from, attrs)
    SELECT e.notification_id, s ->> 'customer_id', (s ->> 'effective_from')::timestamptz, s -> 'attributes'
    FROM appended e, LATERAL ledger_state(e.state) s
    WHERE e.topic = 'ledger.CustomerAttributesChanged';

    WITH invoice AS MATERIALIZED (
        SELECT e.notification_id AS position, ledger_state(e.state) AS s
        FROM appended e
        WHERE e.topic = 'ledger.InvoiceIssued'
    ), header AS (
        INSERT INTO invoice_fact_rows (position, invoice_id, source, source_customer_id, period, issued_at, currency,
                                       total_cents, lines_cents)
        SELECT position, s ->> 'invoice_id', s ->> 'source', s ->> 'source_customer_id', s ->> 'period',
               (s ->> 'issued_at')::timestamptz, s ->> 'currency', (s ->> 'total_cents')::bigint,
               (SELECT coalesce(sum((l ->> 'amount_cents')::bigint), 0) FROM jsonb_array_elements(s -> 'lines') l)
        FROM invoice
    )
    INSERT INTO invoice_line_rows (position, line_no, invoice_id, line_id, kind, meter, quantity, amount_cents)
    SELECT i.position, l.line_no::int, i.s ->> 'invoice_id', l.line ->> 'line_id', l.line ->> 'kind',
           l.line ->> 'meter', (l.line ->> 'quantity')::bigint, (l.line ->> 'amount_cents')::bigint
    FROM invoice i, LATERAL jsonb_array_elements(i.s -> 'lines') WITH ORDINALITY AS l(line, line_no);
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_events_type_facts AFTER INSERT ON ledger_events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_type_facts();

-- The facts already stored, typed from the JSON views as they stand before this migration.
INSERT INTO link_fact_rows SELECT position, source, source_customer_id, customer_id, effective_from
FROM identity_link_facts;
INSERT INTO attribute_fact_rows SELECT position, customer_id, effective_from, attrs FROM attribute_facts;
INSERT INTO invoice_fact_rows SELECT position, invoice_id, source, source_customer_id, period, issued_at, currency,
                                     total_cents,
                                     (SELECT coalesce(sum((l ->> 'amount_cents')::bigint), 0)
                                      FROM jsonb_array_elements(lines) l)
FROM invoice_facts;
INSERT INTO invoice_line_rows SELECT position, line_no, invoice_id, line_id, kind, meter, quantity, amount_cents
FROM invoice_line_facts;

CREATE OR REPLACE VIEW identity_link_facts AS
SELECT position, source, source_customer_id, customer_id, effective_from
FROM link_fact_rows;

CREATE OR REPLACE VIEW attribute_facts AS
SELECT position, customer_id, effective_from, attrs
FROM attribute_fact_rows;

-- The lines are rows of invoice_line_facts now (the JSON array column of migration 0070 goes); the header carries
-- their sum.
DROP VIEW invoice_facts;
CREATE VIEW invoice_facts AS
SELECT position, invoice_id, source, source_customer_id, period, issued_at, currency, total_cents, lines_cents
FROM invoice_fact_rows;

CREATE OR REPLACE VIEW invoice_line_facts AS
SELECT position, invoice_id, line_no, line_id, kind, meter, quantity, amount_cents
FROM invoice_line_rows;

-- Appended once, like every fact: the row and statement triggers of migration 0002, made by one function that later
-- fact tables call too (trigger names TABLE_no_update_delete and TABLE_no_truncate, as there).
CREATE FUNCTION ledger_forbid_rewrites(fact_table regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = fact_table);
BEGIN
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite()', name || '_no_update_delete', fact_table);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite()', name || '_no_truncate', fact_table);
END;
$$;

SELECT ledger_forbid_rewrites(fact_table)
FROM unnest(ARRAY['link_fact_rows', 'attribute_fact_rows', 'invoice_fact_rows', 'invoice_line_rows']::regclass[])
     AS fact_table;
