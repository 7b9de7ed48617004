-- grain: one row per usage fact to resolve one by one; key: position
-- facts read: usage_facts
-- Transient ({stage} = pg_temp). Rebuild: the late-by-position facts and the facts of pre-close groups that do
-- not resolve to one customer as a whole. Incremental: the new facts, and the facts of a source id that got a
-- new identity link from the month of its effective_from on (their resolution may have changed).
-- read model: stage
-- depends on: period_close, usage_group_stage
-- rebuild: fill_rebuild
-- increment: refill scope (create, fill_incremental, fill_relinked, analyze)
-- increment on: usage_facts, identity_link_facts
-- @create
CREATE TABLE {stage}.usage_fact_stage (
    position           bigint NOT NULL,
    source             text NOT NULL,
    source_customer_id text NOT NULL,
    meter              text NOT NULL,
    quantity           bigint NOT NULL,
    event_time         timestamptz NOT NULL,
    month              text NOT NULL,
    cutoff             bigint NOT NULL       -- c(month), or the largest bigint while the month is open
);
-- @fill_rebuild
CREATE TABLE {stage}.usage_fact_stage AS
SELECT u.position, u.source, u.source_customer_id, u.meter, u.quantity, u.event_time,
       to_char(u.event_time AT TIME ZONE 'UTC', 'YYYY-MM') AS month, {cutoff[u.event_time]} AS cutoff
FROM usage_facts u
WHERE u.position <= {head} AND u.position > {cutoff[u.event_time]}
  AND u.position > {cutoff.first};  -- a range of usage_facts' positions (its BRIN index): only the facts after the first close
INSERT INTO {stage}.usage_fact_stage
SELECT f.position, f.source, f.source_customer_id, f.meter, f.quantity, f.event_time,
       to_char(g.month_start, 'YYYY-MM'), g.cutoff
FROM {stage}.usage_group_resolved g
JOIN usage_facts f
  ON f.source = g.source AND f.source_customer_id = g.source_customer_id AND f.meter = g.meter
 AND f.position < g.cutoff AND f.position <= {head}
 AND date_trunc('month', f.event_time AT TIME ZONE 'UTC') = g.month_start
WHERE g.customer_id IS NULL;
ANALYZE {stage}.usage_fact_stage;
-- @fill_incremental
INSERT INTO {stage}.usage_fact_stage
SELECT f.position, f.source, f.source_customer_id, f.meter, f.quantity, f.event_time,
       to_char(f.event_time AT TIME ZONE 'UTC', 'YYYY-MM'), coalesce(c.close_position, 9223372036854775807)
FROM usage_facts f
LEFT JOIN {schema}.period_close c ON c.month_start = date_trunc('month', f.event_time AT TIME ZONE 'UTC')
WHERE f.position > {checkpoint} AND f.position <= {head};
-- @fill_incremental_rest
-- The new facts of a usage-only batch that usage_batch_stage's @split left out of the in-place addition: those of
-- a closed month, and those that resolve nowhere with every link known now (its join's conditions, fact by fact).
INSERT INTO {stage}.usage_fact_stage
SELECT f.position, f.source, f.source_customer_id, f.meter, f.quantity, f.event_time,
       to_char(f.event_time AT TIME ZONE 'UTC', 'YYYY-MM'), coalesce(c.close_position, 9223372036854775807)
FROM usage_facts f
LEFT JOIN {schema}.period_close c ON c.month_start = date_trunc('month', f.event_time AT TIME ZONE 'UTC')
WHERE f.position > {checkpoint} AND f.position <= {head}
  AND (c.month_start IS NOT NULL
       OR NOT EXISTS (SELECT 1 FROM {schema}.link_range r
                      WHERE r.source = f.source AND r.source_customer_id = f.source_customer_id
                        AND r.known_through = 9223372036854775807
                        AND r.valid_from <= f.event_time AND f.event_time < r.valid_to));
-- @fill_relinked
-- Reads only when identity links are new: a relinked source id's facts of the months from the one of its earliest new
-- link's effective_from on (usage_on_time's and usage_late's rows of those months were deleted; a fact before
-- that instant resolves as before). usage_facts has no index by source id: the bound on event_time is read
-- through its BRIN index, which skips the blocks written before the earliest such month.
INSERT INTO {stage}.usage_fact_stage
SELECT f.position, f.source, f.source_customer_id, f.meter, f.quantity, f.event_time,
       to_char(f.event_time AT TIME ZONE 'UTC', 'YYYY-MM'), coalesce(c.close_position, 9223372036854775807)
FROM usage_facts f
JOIN {stage}.relink_source r ON r.source = f.source AND r.source_customer_id = f.source_customer_id
LEFT JOIN {schema}.period_close c ON c.month_start = date_trunc('month', f.event_time AT TIME ZONE 'UTC')
WHERE f.position <= {checkpoint}
  AND f.event_time >= date_trunc('month', r.since AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
  AND f.event_time >= date_trunc('month', {relinked_since} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
  AND EXISTS (SELECT 1 FROM {stage}.relink_source);  -- no new link: nothing to read
