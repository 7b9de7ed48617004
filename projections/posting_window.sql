-- grain: one row per period close, in position order; key: after_position
-- facts read: period_close_facts (through period_close)
-- For a position q with after_position < q <= through_position, the earliest open month
-- (SPEC §3.7: the month after the latest month closed before q) is posting_month.
-- read model: finance
-- depends on: period_close
-- rebuild: fill
-- increment: recompute whole (delete, fill)
-- increment on: identity_link_facts, period_close_facts
-- @create
CREATE TABLE {schema}.posting_window (
    after_position   bigint PRIMARY KEY,
    through_position bigint NOT NULL,
    posting_month    text NOT NULL
);
-- @delete
DELETE FROM {schema}.posting_window;
-- @fill
INSERT INTO {schema}.posting_window (after_position, through_position, posting_month)
SELECT close_position,
       coalesce(lead(close_position) OVER w, 9223372036854775807),
       to_char(max(month_start) OVER w + interval '1 month', 'YYYY-MM')
FROM {schema}.period_close
WINDOW w AS (ORDER BY close_position);
