-- Typed views of the non-usage facts, decoded from the events' JSON state. These and usage_facts
-- are the only inputs of the projections (docs/fact-relations.md).
CREATE FUNCTION ledger_state(state bytea) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT convert_from(state, 'UTF8')::jsonb $$;

CREATE FUNCTION ledger_recorded_at(state bytea) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (convert_from(state, 'UTF8')::jsonb -> 'timestamp' ->> '_data_')::timestamptz $$;

CREATE VIEW identity_link_facts AS
SELECT e.notification_id AS position,
       s ->> 'source' AS source,
       s ->> 'source_customer_id' AS source_customer_id,
       s ->> 'customer_id' AS customer_id,
       (s ->> 'effective_from')::timestamptz AS effective_from
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = 'ledger.CustomerIdentityLinked';

CREATE VIEW attribute_facts AS
SELECT e.notification_id AS position,
       s ->> 'customer_id' AS customer_id,
       (s ->> 'effective_from')::timestamptz AS effective_from,
       s -> 'attributes' AS attrs
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = 'ledger.CustomerAttributesChanged';

CREATE VIEW price_facts AS
SELECT e.notification_id AS position,
       s ->> 'plan' AS plan,
       s ->> 'effective_month' AS effective_month,
       (s ->> 'base_fee_cents')::bigint AS base_fee_cents,
       s -> 'meters' AS meters
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = 'ledger.PriceSet';

CREATE VIEW invoice_facts AS
SELECT e.notification_id AS position,
       s ->> 'invoice_id' AS invoice_id,
       s ->> 'source' AS source,
       s ->> 'source_customer_id' AS source_customer_id,
       s ->> 'period' AS period,
       (s ->> 'issued_at')::timestamptz AS issued_at,
       s ->> 'currency' AS currency,
       (s ->> 'total_cents')::bigint AS total_cents
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = 'ledger.InvoiceIssued';

CREATE VIEW invoice_line_facts AS
SELECT e.notification_id AS position,
       s ->> 'invoice_id' AS invoice_id,
       l.line_no::int AS line_no,
       l.line ->> 'line_id' AS line_id,
       l.line ->> 'kind' AS kind,
       l.line ->> 'meter' AS meter,
       (l.line ->> 'quantity')::bigint AS quantity,
       (l.line ->> 'amount_cents')::bigint AS amount_cents
FROM ledger_events e,
     LATERAL ledger_state(e.state) s,
     LATERAL jsonb_array_elements(s -> 'lines') WITH ORDINALITY AS l(line, line_no)
WHERE e.topic = 'ledger.InvoiceIssued';

CREATE VIEW credit_facts AS
SELECT e.notification_id AS position,
       s ->> 'credit_id' AS credit_id,
       s ->> 'customer_id' AS customer_id,
       s ->> 'invoice_id' AS invoice_id,
       (s ->> 'amount_cents')::bigint AS amount_cents,
       s ->> 'reason' AS reason,
       s ->> 'memo' AS memo,
       s ->> 'actor' AS actor,
       (s ->> 'issued_at')::timestamptz AS issued_at
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = 'ledger.CreditIssued';

CREATE VIEW period_close_facts AS
SELECT e.notification_id AS position,
       s ->> 'month' AS month,
       s ->> 'actor' AS actor,
       (s ->> 'closed_at')::timestamptz AS closed_at
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = 'ledger.PeriodClosed';

-- A credit id is used once, whichever stream holds the credit (an invoice's, or its own).
CREATE FUNCTION ledger_credit_id(state bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT convert_from(state, 'UTF8')::jsonb ->> 'credit_id' $$;
CREATE UNIQUE INDEX ledger_events_credit_id_idx ON ledger_events (ledger_credit_id(state))
    WHERE topic = 'ledger.CreditIssued';
