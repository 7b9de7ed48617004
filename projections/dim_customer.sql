-- grain: one row per customer x SCD2 version; key: (customer_id, version)
-- facts read: attribute_facts (through attribute_key)
-- SPEC §3.3: an attribute's value at t comes from the fact with the greatest effective_from <= t that names it
-- (a JSON null clears it); versions are the maximal intervals over which all five values stay the same, so a
-- fact that changes nothing starts no version. valid_to is the next version's valid_from (null: current).
-- The customer's first attribute fact always starts version 1.
-- read model: finance
-- depends on: attribute_key
-- rebuild: fill, analyze
-- increment: refill scope (delete, fill)
-- increment on: attribute_facts
-- @create
CREATE TABLE {schema}.dim_customer (
    customer_id text NOT NULL,
    version     integer NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,
    name        text,
    segment     text,
    owner       text,
    plan        text,
    region      text
);
-- @delete
DELETE FROM {schema}.dim_customer WHERE {cust[customer_id]};
-- @fill
DROP TABLE IF EXISTS {stage}.version_pair;
CREATE TABLE {stage}.version_pair AS
SELECT DISTINCT customer_id, {head}::bigint AS q FROM {schema}.attribute_key
WHERE position <= {head} AND {cust[customer_id]};
INSERT INTO {schema}.dim_customer
SELECT customer_id, version, valid_from, valid_to, name, segment, owner, plan, region
FROM (
-- @include dim_customer.versions
) v;
-- @versions
-- The rule itself, for every (customer_id, q) of {stage}.version_pair: the versions as known from the attribute
-- facts at positions <= q (attribute_key). dim_customer is the case q = head; a closed month's attributes are the
-- case q = its close position - 1 (SPEC §4.0).
WITH fact AS (
    SELECT p.customer_id, p.q, f.effective_from, f.attrs,
           count(*) FILTER (WHERE jsonb_exists(f.attrs, 'name')) OVER w AS name_fact,
           count(*) FILTER (WHERE jsonb_exists(f.attrs, 'segment')) OVER w AS segment_fact,
           count(*) FILTER (WHERE jsonb_exists(f.attrs, 'owner')) OVER w AS owner_fact,
           count(*) FILTER (WHERE jsonb_exists(f.attrs, 'plan')) OVER w AS plan_fact,
           count(*) FILTER (WHERE jsonb_exists(f.attrs, 'region')) OVER w AS region_fact
    FROM {stage}.version_pair p
    JOIN {schema}.attribute_key f ON f.customer_id = p.customer_id AND f.position <= p.q
    WINDOW w AS (PARTITION BY p.customer_id, p.q ORDER BY f.effective_from)
), state AS (   -- the five values in effect from each fact's effective_from
    SELECT customer_id, q, effective_from,
           first_value(attrs ->> 'name') OVER (PARTITION BY customer_id, q, name_fact ORDER BY effective_from) AS name,
           first_value(attrs ->> 'segment') OVER (PARTITION BY customer_id, q, segment_fact ORDER BY effective_from) AS segment,
           first_value(attrs ->> 'owner') OVER (PARTITION BY customer_id, q, owner_fact ORDER BY effective_from) AS owner,
           first_value(attrs ->> 'plan') OVER (PARTITION BY customer_id, q, plan_fact ORDER BY effective_from) AS plan,
           first_value(attrs ->> 'region') OVER (PARTITION BY customer_id, q, region_fact ORDER BY effective_from) AS region
    FROM fact
), change AS (
    SELECT *,
           row_number() OVER w = 1
           OR name IS DISTINCT FROM lag(name) OVER w OR segment IS DISTINCT FROM lag(segment) OVER w
           OR owner IS DISTINCT FROM lag(owner) OVER w OR plan IS DISTINCT FROM lag(plan) OVER w
           OR region IS DISTINCT FROM lag(region) OVER w AS starts_version
    FROM state
    WINDOW w AS (PARTITION BY customer_id, q ORDER BY effective_from)
)
SELECT customer_id, q, row_number() OVER w AS version, effective_from AS valid_from,
       lead(effective_from) OVER w AS valid_to, name, segment, owner, plan, region
FROM change
WHERE starts_version
WINDOW w AS (PARTITION BY customer_id, q ORDER BY effective_from)
-- @index
ALTER TABLE {schema}.dim_customer ADD PRIMARY KEY (customer_id, version);
