-- grain: one row per attribute fact; key: (customer_id, position)
-- facts read: attribute_facts
-- Each attribute fact's customer and position, typed and indexed by customer: where the pricing rule, the late
-- postings and the customer-months look up a few customers' attribute facts, attribute_facts decodes every fact's
-- JSON to find them (200k attribute facts, wide benchmark shape: 0.8 s a lookup, three in an increment with late
-- facts). Facts are only ever added, so is this.
-- read model: finance
-- depends on: none
-- rebuild: fill, index, analyze
-- increment: add in place (append)
-- increment on: attribute_facts
-- @create
CREATE TABLE {schema}.attribute_key (
    customer_id text NOT NULL,
    position    bigint NOT NULL
);
-- @fill
INSERT INTO {schema}.attribute_key
SELECT customer_id, position FROM attribute_facts WHERE position <= {head};
-- @append
INSERT INTO {schema}.attribute_key
SELECT customer_id, position FROM attribute_facts WHERE position > {checkpoint} AND position <= {head};
-- @index
CREATE UNIQUE INDEX ON {schema}.attribute_key (customer_id, position);
-- @version_facts
-- The attribute facts of the customers in {stage}.version_pair, into {stage}.version_fact (for dim_customer.versions):
-- only theirs decoded, found by position.
CREATE TABLE {stage}.version_fact AS
SELECT position, customer_id, effective_from, attrs FROM attribute_facts
WHERE position IN (SELECT k.position FROM {schema}.attribute_key k
                   WHERE k.position <= {head} AND k.customer_id IN (SELECT customer_id FROM {stage}.version_pair));
