-- The access log: one row per request to the service (who, with which role, what, the outcome, what it
-- appended or returned, how long it took). Immutable like the facts: UPDATE, DELETE and TRUNCATE are refused.
CREATE TABLE api_access_log (
    access_id      bigserial PRIMARY KEY,
    request_id     uuid NOT NULL,
    at             timestamptz NOT NULL,
    principal      text,            -- empty for a request without a valid token
    token_id       text,
    role           text,
    method         text NOT NULL,
    path           text NOT NULL,
    params         jsonb NOT NULL,
    status         int NOT NULL,
    rows_returned  bigint,
    facts_appended bigint,
    duration_ms    double precision NOT NULL,
    client         text
);
CREATE INDEX api_access_log_principal_idx ON api_access_log (principal, access_id);
CREATE INDEX api_access_log_at_idx ON api_access_log USING brin (at);

CREATE TRIGGER api_access_log_no_update_delete BEFORE UPDATE OR DELETE ON api_access_log
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_log_rewrite();
CREATE TRIGGER api_access_log_no_truncate BEFORE TRUNCATE ON api_access_log
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_log_rewrite();
