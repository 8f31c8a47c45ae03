-- Platform events: the transactional outbox and the gapless feed (docs/events.md).
--
-- Each event row is written in the transaction of the change it describes, as that transaction's
-- last statement (ledger/store/events.py); `seq` is drawn then, so an event written after another
-- transaction's commit has a larger seq than every event of that transaction. Writers take no
-- shared lock: events of different transactions never wait for each other.
--
-- An event's position in the platform's feed is assigned afterwards, once it is committed, by the
-- sequencer (EventsTable.sequence, run before every feed read): with the platform's event_streams
-- row locked, it numbers the committed events that have no position yet in seq order, continuing
-- from last_position. Positions are therefore 1, 2, 3, … without holes, assigned once, and every
-- event that commits later gets a larger position than any a reader has seen: paging from any
-- cursor never skips one.
--
-- Events are immutable (their bytes are what webhook signatures cover): the only change allowed is
-- giving an event its position, once; DELETE and TRUNCATE are refused like on the journal.

CREATE TABLE event_streams (
    platform_id text PRIMARY KEY REFERENCES platforms (platform_id),
    last_position bigint NOT NULL DEFAULT 0,
    CONSTRAINT event_streams_last_position_non_negative CHECK (last_position >= 0)
);

CREATE TABLE events (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    event_id text NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,  -- drawn when the event is written (the order of chains)
    position bigint,                          -- in the platform's feed, once sequenced
    type text NOT NULL,
    chain text NOT NULL,                      -- the resource whose history the event tells
    created_at timestamptz NOT NULL,
    body bytea NOT NULL,                      -- the event's JSON, exactly as the feed and webhooks send it
    PRIMARY KEY (platform_id, event_id),
    CONSTRAINT events_position_unique UNIQUE (platform_id, position),
    CONSTRAINT events_position_positive CHECK (position IS NULL OR position > 0),
    CONSTRAINT events_event_id_format CHECK (event_id ~ '^evt_[0-9a-f]{24}$'),
    CONSTRAINT events_type_valid CHECK (type IN (
        'order.created', 'order.captured', 'order.failed', 'order.expired',
        'refund.created', 'refund.succeeded', 'refund.failed',
        'settlement.imported',
        'payout.created', 'payout.paid', 'payout.failed',
        'reconciliation.exception_opened', 'reconciliation.exception_resolved',
        'webhook_endpoint.disabled'))
);
CREATE INDEX events_unsequenced ON events (platform_id, seq) WHERE position IS NULL;
CREATE INDEX events_by_type ON events (platform_id, type, position) WHERE position IS NOT NULL;

CREATE FUNCTION events_position_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.position IS NULL AND NEW.position IS NOT NULL
       AND (NEW.platform_id, NEW.event_id, NEW.seq, NEW.type, NEW.chain, NEW.created_at, NEW.body)
           IS NOT DISTINCT FROM (OLD.platform_id, OLD.event_id, OLD.seq, OLD.type, OLD.chain, OLD.created_at, OLD.body)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'events are immutable: only a position is given, once'
        USING ERRCODE = 'restrict_violation', CONSTRAINT = 'events_append_only';
END;
$$;

CREATE TRIGGER events_position_once BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_position_once();
CREATE TRIGGER events_append_only BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
