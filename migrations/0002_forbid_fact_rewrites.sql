-- Immutability enforced by the database: facts are appended, never updated, deleted or truncated,
-- whatever the role (triggers fire for the owner too). Only a superuser disabling triggers can
-- get round this, and `ledger verify` finds what such a session changed.
CREATE FUNCTION ledger_refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is refused: facts are immutable; corrections are new facts',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER ledger_events_no_update_delete BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER usage_facts_no_update_delete BEFORE UPDATE OR DELETE ON usage_facts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER usage_facts_no_truncate BEFORE TRUNCATE ON usage_facts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER usage_months_no_update_delete BEFORE UPDATE OR DELETE ON usage_months
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER usage_months_no_truncate BEFORE TRUNCATE ON usage_months
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
