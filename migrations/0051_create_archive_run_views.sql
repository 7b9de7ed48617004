-- Runs of `ledger archive facts`, decoded from their `ledger.FactsArchived` facts: one row per run, and one
-- row per Parquet file a run wrote (its path inside the archive, dataset, month, rows and sha256).
CREATE VIEW archive_run_facts AS
SELECT e.notification_id AS position,
       s ->> 'archive_id' AS archive_id,
       (s ->> 'run')::int AS run,
       (s ->> 'from_position')::bigint AS from_position,
       (s ->> 'to_position')::bigint AS to_position,
       ledger_recorded_at(e.state) AS recorded_at
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = 'ledger.FactsArchived';

CREATE VIEW archive_file_facts AS
SELECT e.notification_id AS position,
       s ->> 'archive_id' AS archive_id,
       (s ->> 'run')::int AS run,
       f ->> 'path' AS path,
       f ->> 'dataset' AS dataset,
       f ->> 'month' AS month,
       (f ->> 'rows')::bigint AS row_count,
       f ->> 'sha256' AS sha256
FROM ledger_events e, LATERAL ledger_state(e.state) s, LATERAL jsonb_array_elements(s -> 'files') f
WHERE e.topic = 'ledger.FactsArchived';
