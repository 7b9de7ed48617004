-- A block-range (BRIN) index on usage_facts' event_time, for the projector's reading of a relinked source id's
-- facts: a new identity link changes the resolution of the facts at or after its effective_from only, and facts
-- are appended roughly in event-time order, so the facts since an instant lie in the table's later blocks. A
-- range's maximum event_time is that of its newest on-time fact (late facts only lower its minimum), so
-- `event_time >= t` skips every block range written before t. Its cost at ingest is one summary per 32 pages,
-- summarized in the background (autosummarize); the b-tree tried before tripled the COPY cost.
CREATE INDEX usage_facts_event_time_brin ON usage_facts USING brin (event_time)
    WITH (pages_per_range = 32, autosummarize = on);
