-- The quarantine gets a hash chain of its own, in quarantine_id order, over every column:
--   chain_hash = sha256(previous || id || kind || source_file || line_number || raw_text || raw_bytes || field
--                       || reason || record_digest || quarantined_at in microseconds since 1970)
-- each variable field written as its int4 length and bytes (-1 for null), numbers as int8. The trigger takes the
-- table's lock and draws the id under it, so id order is commit order and each row links to the one before.
-- `ledger verify` recomputes the chain independently of this function.
ALTER TABLE quarantine ADD COLUMN chain_hash bytea;

CREATE FUNCTION ledger_quarantine_field(value bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN value IS NULL THEN '\xffffffff'::bytea ELSE int4send(octet_length(value)) || value END
$$;

CREATE FUNCTION ledger_quarantine_link(previous bytea, q quarantine) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(previous || int8send(q.quarantine_id)
                  || ledger_quarantine_field(convert_to(q.kind, 'UTF8'))
                  || ledger_quarantine_field(convert_to(q.source_file, 'UTF8'))
                  || ledger_quarantine_field(int8send(q.line_number))
                  || ledger_quarantine_field(convert_to(q.raw_text, 'UTF8'))
                  || ledger_quarantine_field(q.raw_bytes)
                  || ledger_quarantine_field(convert_to(q.field, 'UTF8'))
                  || ledger_quarantine_field(convert_to(q.reason, 'UTF8'))
                  || ledger_quarantine_field(q.record_digest)
                  || int8send((extract(epoch FROM q.quarantined_at) * 1000000)::bigint))
$$;

CREATE FUNCTION ledger_chain_quarantine() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head bytea;
BEGIN
    LOCK TABLE quarantine IN EXCLUSIVE MODE;
    NEW.quarantine_id := nextval(pg_get_serial_sequence('quarantine', 'quarantine_id'));
    SELECT chain_hash INTO head FROM quarantine ORDER BY quarantine_id DESC LIMIT 1;
    NEW.chain_hash := ledger_quarantine_link(coalesce(head, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea), NEW);
    RETURN NEW;
END;
$$;

-- The records quarantined before this migration are chained once, in id order.
ALTER TABLE quarantine DISABLE TRIGGER quarantine_no_update_delete;
DO $$
DECLARE
    q quarantine;
    head bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
BEGIN
    FOR q IN SELECT * FROM quarantine ORDER BY quarantine_id LOOP
        head := ledger_quarantine_link(head, q);
        UPDATE quarantine SET chain_hash = head WHERE quarantine_id = q.quarantine_id;
    END LOOP;
END $$;
ALTER TABLE quarantine ENABLE TRIGGER quarantine_no_update_delete;

CREATE TRIGGER quarantine_chained BEFORE INSERT ON quarantine
    FOR EACH ROW EXECUTE FUNCTION ledger_chain_quarantine();
