-- grain: one row per source id x link version x effective range; key: (source, source_customer_id, known_after, valid_from)
-- facts read: identity_link_facts
-- A link version is the set of a source id's links at positions <= known_after; it answers "resolve using the
-- links at positions < k" for every cutoff k with known_after < k <= known_through (and "links at positions <= q"
-- for k = q + 1). Within a version, [valid_from, valid_to) maps event instants to the customer of the link with
-- the greatest effective_from <= t (SPEC §3.2). Instants before the first valid_from are unattributed.
-- read model: finance
-- depends on: none
-- rebuild: fill, index, analyze
-- increment: recompute whole (delete, fill)
-- increment on: identity_link_facts, period_close_facts
-- @create
CREATE TABLE {schema}.link_range (
    source             text NOT NULL,
    source_customer_id text NOT NULL,
    known_after        bigint NOT NULL,
    known_through      bigint NOT NULL,
    valid_from         timestamptz NOT NULL,
    valid_to           timestamptz NOT NULL,   -- 'infinity' for the last range
    customer_id        text NOT NULL
);
-- @delete
DELETE FROM {schema}.link_range;
-- @fill
-- The link facts up to the head, read twice from an analyzed stage.
DROP TABLE IF EXISTS {stage}.link_stage;
CREATE TABLE {stage}.link_stage AS
SELECT position, source, source_customer_id, customer_id, effective_from
FROM identity_link_facts
WHERE position <= {head};
ANALYZE {stage}.link_stage;
INSERT INTO {schema}.link_range
WITH version AS (
    SELECT source, source_customer_id, position AS known_after,
           coalesce(lead(position) OVER (PARTITION BY source, source_customer_id ORDER BY position),
                    9223372036854775807) AS known_through
    FROM {stage}.link_stage
)
SELECT v.source, v.source_customer_id, v.known_after, v.known_through, l.effective_from,
       coalesce(lead(l.effective_from) OVER (PARTITION BY v.source, v.source_customer_id, v.known_after
                                             ORDER BY l.effective_from), 'infinity'),
       l.customer_id
FROM version v
JOIN {stage}.link_stage l ON l.source = v.source AND l.source_customer_id = v.source_customer_id
                         AND l.position <= v.known_after;
-- @index
CREATE INDEX ON {schema}.link_range (source, source_customer_id);
