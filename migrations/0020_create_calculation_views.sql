-- Typed views of the calculation facts (SPEC §3.8), decoded like the other non-usage facts. A store starts with
-- `v1` (month_start) defined and in force: it is no fact, so the views' readers add it themselves
-- (projections/calc_in_force.sql, the calculation commands).
CREATE VIEW calculation_defined_facts AS
SELECT e.notification_id AS position,
       s ->> 'name' AS name,
       s ->> 'plan_rule' AS plan_rule,
       s ->> 'actor' AS actor,
       s ->> 'note' AS note,
       (s ->> 'defined_at')::timestamptz AS defined_at
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = 'ledger.CalculationDefined';

CREATE VIEW calculation_promoted_facts AS
SELECT e.notification_id AS position,
       (s ->> 'sequence')::bigint AS sequence,
       s ->> 'name' AS name,
       s ->> 'plan_rule' AS plan_rule,
       s ->> 'actor' AS actor,
       s ->> 'reason' AS reason,
       (s ->> 'promoted_at')::timestamptz AS promoted_at
FROM ledger_events e, LATERAL ledger_state(e.state) s
WHERE e.topic = 'ledger.CalculationPromoted';
