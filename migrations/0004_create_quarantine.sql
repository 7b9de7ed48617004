-- The quarantine: every rejected record, with its raw text, where it came from and why.
-- Append-only like the facts; a record re-read from the same file and line is kept once.
CREATE TABLE quarantine (
    quarantine_id bigserial PRIMARY KEY,
    kind text NOT NULL,
    source_file text NOT NULL,
    line_number bigint,
    raw_text text NOT NULL,
    raw_bytes bytea,
    field text,
    reason text NOT NULL,
    record_digest bytea NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX quarantine_record_idx ON quarantine (kind, source_file, line_number, record_digest);

CREATE TRIGGER quarantine_no_update_delete BEFORE UPDATE OR DELETE ON quarantine
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER quarantine_no_truncate BEFORE TRUNCATE ON quarantine
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
