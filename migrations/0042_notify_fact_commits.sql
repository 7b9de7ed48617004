-- Wakes followers (`ledger project --follow`, the service) when facts commit: every append writes ledger_events
-- (a usage batch writes its batch event there), and a NOTIFY is delivered at commit, once per transaction.
CREATE FUNCTION ledger_notify_facts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ledger_facts', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_events_notify AFTER INSERT ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_notify_facts();
