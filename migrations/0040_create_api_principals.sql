-- The service's principals: bearer tokens with a role. Only a token's sha256 is stored; the token itself is
-- printed once by `ledger token create`. Tokens and their revocations are appended, never updated or deleted,
-- so who could do what, and since when, stays on record.
CREATE FUNCTION ledger_refuse_log_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is refused: this record is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TABLE api_tokens (
    token_id   text PRIMARY KEY,
    name       text NOT NULL CHECK (name <> ''),
    role       text NOT NULL CHECK (role IN ('ingest', 'finance', 'auditor', 'admin')),
    token_sha256 bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    created_by text NOT NULL,
    expires_at timestamptz
);

CREATE TABLE api_token_revocations (
    token_id   text PRIMARY KEY REFERENCES api_tokens (token_id),
    revoked_at timestamptz NOT NULL,
    revoked_by text NOT NULL
);

CREATE TRIGGER api_tokens_no_update_delete BEFORE UPDATE OR DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_log_rewrite();
CREATE TRIGGER api_tokens_no_truncate BEFORE TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_log_rewrite();
CREATE TRIGGER api_token_revocations_no_update_delete BEFORE UPDATE OR DELETE ON api_token_revocations
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_log_rewrite();
CREATE TRIGGER api_token_revocations_no_truncate BEFORE TRUNCATE ON api_token_revocations
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_log_rewrite();
