-- What each `ledger verify` found (the command, or the service's GET /v1/verify): when, through which head, and
-- whether every check agreed. The web pages show the last one as an invoice's "verified" badge. Append-only.
CREATE TABLE verify_runs (
    run_id          bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    head_position   bigint,             -- null: an empty store
    head_hash       text NOT NULL,
    facts           bigint NOT NULL,
    ok              boolean NOT NULL,
    projections     boolean NOT NULL,   -- false: --skip-projections (chain and usage batches only)
    first_mismatch  jsonb,
    seconds         double precision NOT NULL
);

CREATE TRIGGER verify_runs_no_update_delete BEFORE UPDATE OR DELETE ON verify_runs
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_log_rewrite();
CREATE TRIGGER verify_runs_no_truncate BEFORE TRUNCATE ON verify_runs
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_log_rewrite();
