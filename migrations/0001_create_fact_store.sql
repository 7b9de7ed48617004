-- The fact store: eventsourcing's application events table (same definition its PostgreSQL
-- recorder creates, so its recorder, mapper and notification log work on it unchanged), plus
-- chain_hash: the tamper-evidence chain, sha256(previous chain_hash || position || topic || 0x00 || state).
CREATE TABLE ledger_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    chain_hash bytea,
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);
CREATE UNIQUE INDEX ledger_events_notification_id_idx ON ledger_events (notification_id ASC);

-- Non-usage facts are few: an index by topic lets their views skip the usage rows entirely.
CREATE INDEX ledger_events_topic_idx ON ledger_events (topic, notification_id)
    WHERE topic <> 'ledger.UsageRecorded';

-- Usage facts, typed, written in the same transaction as their events row (position = notification_id).
-- `ledger verify` checks that every row equals its event's payload.
CREATE TABLE usage_facts (
    position bigint PRIMARY KEY,
    event_id text NOT NULL,
    source text NOT NULL,
    source_customer_id text NOT NULL,
    meter text NOT NULL,
    quantity bigint NOT NULL,
    event_time timestamptz NOT NULL
);
-- No secondary index: each one costs the ingest more than raw COPY's whole per-row budget (measured:
-- an index on (source, source_customer_id, event_time) tripled the COPY cost of this table).

-- Months that have any usage fact, so a period close can check earlier open months without a scan.
CREATE TABLE usage_months (
    month text PRIMARY KEY
);
