-- Extended statistics for the projector's one aggregation pass over usage_facts: without them the planner
-- estimates one group per fact for (source id, meter, month) and sorts every fact instead of hashing, and it
-- will not run the pass in parallel. They cost nothing at ingest, only at ANALYZE.
CREATE STATISTICS usage_facts_source_meter (ndistinct) ON source, source_customer_id, meter FROM usage_facts;
CREATE STATISTICS usage_facts_month ON (date_trunc('month', event_time AT TIME ZONE 'UTC')) FROM usage_facts;
