-- grain: one row per customer x SCD2 version; key: (customer_id, version)
-- facts read: attribute_facts
-- SPEC §3.3: an attribute's value at t comes from the fact with the greatest effective_from <= t that names it
-- (a JSON null clears it); versions are the maximal intervals over which all five values stay the same, so a
-- fact that changes nothing starts no version. valid_to is the next version's valid_from (null: current).
-- The customer's first attribute fact always starts version 1.
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
INSERT INTO {schema}.dim_customer
WITH fact AS (
    SELECT customer_id, effective_from, attrs,
           count(*) FILTER (WHERE jsonb_exists(attrs, 'name')) OVER w AS name_fact,
           count(*) FILTER (WHERE jsonb_exists(attrs, 'segment')) OVER w AS segment_fact,
           count(*) FILTER (WHERE jsonb_exists(attrs, 'owner')) OVER w AS owner_fact,
           count(*) FILTER (WHERE jsonb_exists(attrs, 'plan')) OVER w AS plan_fact,
           count(*) FILTER (WHERE jsonb_exists(attrs, 'region')) OVER w AS region_fact
    FROM attribute_facts
    WHERE position <= {head} AND {cust[customer_id]}
    WINDOW w AS (PARTITION BY customer_id ORDER BY effective_from)
), state AS (   -- the five values in effect from each fact's effective_from
    SELECT customer_id, effective_from,
           first_value(attrs ->> 'name') OVER (PARTITION BY customer_id, name_fact ORDER BY effective_from) AS name,
           first_value(attrs ->> 'segment') OVER (PARTITION BY customer_id, segment_fact ORDER BY effective_from) AS segment,
           first_value(attrs ->> 'owner') OVER (PARTITION BY customer_id, owner_fact ORDER BY effective_from) AS owner,
           first_value(attrs ->> 'plan') OVER (PARTITION BY customer_id, plan_fact ORDER BY effective_from) AS plan,
           first_value(attrs ->> 'region') OVER (PARTITION BY customer_id, region_fact ORDER BY effective_from) AS region
    FROM fact
), change AS (
    SELECT *,
           row_number() OVER w = 1
           OR name IS DISTINCT FROM lag(name) OVER w OR segment IS DISTINCT FROM lag(segment) OVER w
           OR owner IS DISTINCT FROM lag(owner) OVER w OR plan IS DISTINCT FROM lag(plan) OVER w
           OR region IS DISTINCT FROM lag(region) OVER w AS starts_version
    FROM state
    WINDOW w AS (PARTITION BY customer_id ORDER BY effective_from)
)
SELECT customer_id, row_number() OVER w, effective_from, lead(effective_from) OVER w,
       name, segment, owner, plan, region
FROM change
WHERE starts_version
WINDOW w AS (PARTITION BY customer_id ORDER BY effective_from);
-- @index
ALTER TABLE {schema}.dim_customer ADD PRIMARY KEY (customer_id, version);
