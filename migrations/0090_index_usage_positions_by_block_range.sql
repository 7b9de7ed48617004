-- usage_facts' positions are indexed by block range (BRIN) instead of a b-tree primary key.
-- Measured reason (docs/benchmarks.md): of a COPY of 1M usage rows, the b-tree on position cost PostgreSQL
-- 0.45-0.6 s of 2.2 s, a fifth of the ingest's database time per row. The rows of usage_facts are appended in
-- position order (positions are drawn under the events table's EXCLUSIVE lock, in commit order, and a fact is
-- never updated or deleted), so each block range holds a narrow run of positions: a range of positions (the
-- projector's increments, the archive's windows, a batch in `ledger verify`, a trace) reads only its blocks.
-- A position stays unique without the b-tree: the sequence draws each once, and `ledger verify` counts each
-- recorded batch's rows in its range of positions and hashes them, so a second row at a position is reported.
ALTER TABLE usage_facts DROP CONSTRAINT usage_facts_pkey;
ALTER TABLE usage_facts ALTER COLUMN position SET NOT NULL;
CREATE INDEX usage_facts_position_brin ON usage_facts USING brin (position)
    WITH (pages_per_range = 16, autosummarize = on);
