-- Usage facts are stored once, typed, in usage_facts: one row per fact, its position drawn from the
-- events table's sequence (the one global order), its (source, event_id) unique (permanent dedup,
-- enforced by the database). Each appended batch of usage facts is itself recorded in ledger_events as a
-- `ledger.UsageBatchRecorded` event (positions first..last, count, sha256 of the rows, file), taking
-- the position after its facts, so the hash chain covers every usage row through its batch.
-- Measured reason (docs/benchmarks.md): a second row per usage fact in the events table cost about
-- two thirds of PostgreSQL's share of the ingest.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_events WHERE topic = 'ledger.UsageRecorded') THEN
        RAISE EXCEPTION 'this store keeps usage facts in the layout of an earlier development build (one '
                        'events row per usage fact), which cannot be converted without rewriting facts: '
                        'ingest its files into a new LEDGER_HOME or database';
    END IF;
END $$;

ALTER TABLE usage_facts
    ALTER COLUMN position SET DEFAULT nextval('ledger_events_notification_id_seq'),
    ADD COLUMN line integer NOT NULL,
    ADD COLUMN properties text,
    ADD CONSTRAINT usage_facts_key UNIQUE (source, event_id);

COMMENT ON COLUMN usage_facts.line IS 'line of the fact in the file its batch recorded_from';
COMMENT ON COLUMN usage_facts.properties IS 'the optional properties object, canonical JSON (sorted keys)';
