-- An invoice's lines as recorded (a JSON array), beside its header: a projection that needs both decodes each
-- invoice's JSON once instead of once through invoice_facts and again through invoice_line_facts.
CREATE OR REPLACE VIEW invoice_facts AS
SELECT e.notification_id AS position,
       s ->> 'invoice_id' AS invoice_id,
       s ->> 'source' AS source,
       s ->> 'source_customer_id' AS source_customer_id,
       s ->> 'period' AS period,
       (s ->> 'issued_at')::timestamptz AS issued_at,
       s ->> 'currency' AS currency,
       (s ->> 'total_cents')::bigint AS total_cents,
       s -> 'lines' AS lines
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = 'ledger.InvoiceIssued';
