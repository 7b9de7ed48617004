-- grain: one row per staged usage fact; key: position
-- facts read: usage_facts (through usage_fact_stage), identity_link_facts (through link_range),
--             period_close_facts (through period_close, posting_window)
-- SPEC §4.1. On time: position < c(m) and the source id resolves at event_time using the links at positions
-- < c(m). Otherwise late: for a closed month, the attribution position a is the smallest q >= p, q > c(m) at
-- which the source id resolves at event_time using the links at positions <= q, i.e. max(p, position of the
-- first link with effective_from <= event_time); the customer is that resolution and the posting month the
-- earliest open month at a. A fact of an open month that does not resolve (even with every link) is late and
-- unattributed until a link arrives; so is a fact of a closed month with no link effective at its event_time.
-- read model: stage
-- depends on: usage_fact_stage, link_range, posting_window
-- rebuild: create, fill
-- increment: refill scope (create, fill)
-- increment on: usage_facts, identity_link_facts
-- @create
CREATE TABLE {stage}.usage_fact_resolved (
    position             bigint NOT NULL,
    source               text NOT NULL,
    source_customer_id   text NOT NULL,
    meter                text NOT NULL,
    quantity             bigint NOT NULL,
    event_time           timestamptz NOT NULL,
    month                text NOT NULL,
    cutoff               bigint NOT NULL,
    is_on_time           boolean NOT NULL,
    customer_id          text,
    attribution_position bigint,
    posting_month        text
);
-- @fill
-- On time: at most one link range matches (the ranges of a version are disjoint, one version per cutoff).
-- Late in a closed month: a = max(p, first link position effective at event_time); the customer is the
-- resolution with the links at positions <= a; the posting month is the earliest open month at a.
INSERT INTO {stage}.usage_fact_resolved
SELECT f.position, f.source, f.source_customer_id, f.meter, f.quantity, f.event_time, f.month, f.cutoff,
       o.customer_id IS NOT NULL, coalesce(o.customer_id, r.customer_id), a.attribution_position, w.posting_month
FROM {stage}.usage_fact_stage f
LEFT JOIN {schema}.link_range o
       ON o.source = f.source AND o.source_customer_id = f.source_customer_id
      AND o.known_after < f.cutoff AND f.cutoff <= o.known_through
      AND o.valid_from <= f.event_time AND f.event_time < o.valid_to
      AND f.position < f.cutoff
LEFT JOIN (SELECT s.position, greatest(s.position, min(first.known_after)) AS attribution_position
           FROM {stage}.usage_fact_stage s
           JOIN {schema}.link_range first
             ON first.source = s.source AND first.source_customer_id = s.source_customer_id
            AND first.valid_from <= s.event_time
           WHERE s.cutoff < 9223372036854775807
           GROUP BY s.position) a
       ON a.position = f.position AND o.customer_id IS NULL
LEFT JOIN {schema}.link_range r
       ON r.source = f.source AND r.source_customer_id = f.source_customer_id
      AND r.known_after <= a.attribution_position AND a.attribution_position < r.known_through
      AND r.valid_from <= f.event_time AND f.event_time < r.valid_to
LEFT JOIN {schema}.posting_window w
       ON w.after_position < a.attribution_position AND a.attribution_position <= w.through_position;
ANALYZE {stage}.usage_fact_resolved;
