-- Where each consumer group stands in each Kafka partition: the offset of the next message to consume.
-- One row per (consumer group, topic, partition). A consumer writes it in the same transaction as the facts
-- and quarantined records of the messages before it, so after a crash, a rebalance or a re-delivery it
-- resumes exactly there: every message becomes one fact, one duplicate or one quarantined record, once.
-- An offset only moves forward (a consumer that lost its partition cannot move it back): refused below.
CREATE TABLE consumer_offsets (
    consumer_group text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL CHECK (partition >= 0),
    next_offset bigint CHECK (next_offset >= 0),  -- null: assigned, nothing consumed yet (start at the beginning)
    bootstrap text,  -- the brokers it last consumed from, for `ledger consume --status`
    messages_consumed bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE FUNCTION ledger_refuse_offset_rewind() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.next_offset IS NOT NULL AND (NEW.next_offset IS NULL OR NEW.next_offset < OLD.next_offset) THEN
        RAISE EXCEPTION 'ledger: consumer group % would move %/% back from offset % to %: offsets only move forward',
            OLD.consumer_group, OLD.topic, OLD.partition, OLD.next_offset, NEW.next_offset
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER consumer_offsets_forward_only BEFORE UPDATE ON consumer_offsets
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_offset_rewind();
CREATE TRIGGER consumer_offsets_no_delete BEFORE DELETE OR TRUNCATE ON consumer_offsets
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite();
