-- grain: one row per attribute fact; key: (customer_id, position)
-- facts read: attribute_facts
-- Each attribute fact indexed by customer and by position: every read model that needs attribute facts
-- (dim_customer, split_month, restatements, the pricing rule, the late postings, the customer-months) reads them
-- here. Facts are only ever added, so is this.
-- read model: finance
-- depends on: none
-- rebuild: fill, index, analyze
-- increment: add in place (append)
-- increment on: attribute_facts
-- @create
CREATE TABLE {schema}.attribute_key (
    customer_id    text NOT NULL,
    position       bigint NOT NULL,
    effective_from timestamptz,
    attrs          jsonb
);
-- @fill
INSERT INTO {schema}.attribute_key
SELECT customer_id, position, effective_from, attrs FROM attribute_facts WHERE position <= {head};
-- @append
INSERT INTO {schema}.attribute_key
SELECT customer_id, position, effective_from, attrs FROM attribute_facts
WHERE position > {checkpoint} AND position <= {head};
-- @index
CREATE UNIQUE INDEX ON {schema}.attribute_key (customer_id, position);
CREATE INDEX ON {schema}.attribute_key (position);   -- the facts after a checkpoint (split_month, restatements)
