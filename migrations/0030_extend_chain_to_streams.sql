-- The hash chain's second format: from `from_position` on, each link also covers the fact's stream and version
-- (originator_id, originator_version), so every column of every events row is under the chain:
--   chain_hash = sha256(previous || position || originator_id || originator_version || topic || 0x00 || state)
-- Rows before it keep the first format (position, topic, state): facts are never rewritten, so a store created
-- before this migration stays verifiable as it was. One row, immutable like the facts.
CREATE TABLE ledger_chain_format (
    format integer PRIMARY KEY,
    from_position bigint NOT NULL
);
INSERT INTO ledger_chain_format (format, from_position)
SELECT 2, coalesce(max(notification_id), 0) + 1 FROM ledger_events;

CREATE TRIGGER ledger_chain_format_no_update_delete BEFORE UPDATE OR DELETE ON ledger_chain_format
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite();
CREATE TRIGGER ledger_chain_format_no_truncate BEFORE TRUNCATE ON ledger_chain_format
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
