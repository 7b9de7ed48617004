-- grain: one row per staged usage fact; key: position
-- facts read: usage_facts (through usage_fact_stage), identity_link_facts (through link_range),
--             period_close_facts (through period_close, posting_window)
-- SPEC §4.1. On time: position < c(m) and the source id resolves at event_time using the links at positions
-- < c(m). Otherwise late: for a closed month, the attribution position a is the smallest q >= p, q > c(m) at
-- which the source id resolves at event_time using the links at positions <= q, i.e. max(p, position of the
-- first link with effective_from <= event_time); the customer is that resolution and the posting month the
-- earliest open month at a. A fact of an open month that does not resolve (even with every link) is late and
-- unattributed until a link arrives; so is a fact of a closed month with no link effective at its event_time.
-- @create
CREATE TABLE {stage}.usage_fact_resolved (
    position             bigint NOT NULL,
    source               text NOT NULL,
    source_customer_id   text NOT NULL,
    meter                text NOT NULL,
    quantity             bigint NOT NULL,
    event_time           timestamptz NOT NULL,
    month                text NOT NULL,
    is_on_time           boolean NOT NULL,
    customer_id          text,
    attribution_position bigint,
    posting_month        text
);
-- @fill
INSERT INTO {stage}.usage_fact_resolved
WITH fact AS (
    SELECT s.*, to_char(s.event_time AT TIME ZONE 'UTC', 'YYYY-MM') AS month, c.close_position,
           coalesce(c.close_position, 9223372036854775807) AS cutoff
    FROM {stage}.usage_fact_stage s
    LEFT JOIN {schema}.period_close c ON c.month_start = date_trunc('month', s.event_time AT TIME ZONE 'UTC')
), on_time AS (
    SELECT f.position, r.customer_id
    FROM fact f
    JOIN {schema}.link_range r
      ON r.source = f.source AND r.source_customer_id = f.source_customer_id
     AND r.known_after < f.cutoff AND f.cutoff <= r.known_through
     AND r.valid_from <= f.event_time AND f.event_time < r.valid_to
    WHERE f.position < f.cutoff
), late AS (
    SELECT f.position, greatest(f.position, min(r.known_after)) AS attribution_position
    FROM fact f
    LEFT JOIN on_time o ON o.position = f.position
    JOIN {schema}.link_range r
      ON r.source = f.source AND r.source_customer_id = f.source_customer_id AND r.valid_from <= f.event_time
    WHERE o.position IS NULL AND f.close_position IS NOT NULL
    GROUP BY f.position
), attributed AS (
    SELECT l.position, l.attribution_position, r.customer_id, w.posting_month
    FROM late l
    JOIN fact f ON f.position = l.position
    JOIN {schema}.link_range r
      ON r.source = f.source AND r.source_customer_id = f.source_customer_id
     AND r.known_after <= l.attribution_position AND l.attribution_position < r.known_through
     AND r.valid_from <= f.event_time AND f.event_time < r.valid_to
    JOIN {schema}.posting_window w
      ON w.after_position < l.attribution_position AND l.attribution_position <= w.through_position
)
SELECT f.position, f.source, f.source_customer_id, f.meter, f.quantity, f.event_time, f.month,
       o.position IS NOT NULL, coalesce(o.customer_id, a.customer_id), a.attribution_position, a.posting_month
FROM fact f
LEFT JOIN on_time o ON o.position = f.position
LEFT JOIN attributed a ON a.position = f.position;
ANALYZE {stage}.usage_fact_resolved;
