-- Platform events: the transactional outbox and the gapless feed (docs/events.md).
--
-- Each event row is written in the transaction of the change it describes (ledger/store/events.py).
-- Its position in the platform's stream is taken from event_streams in that same transaction, as
-- the last thing before COMMIT: the stream's row stays locked until the transaction ends, so the
-- platform's transactions that write events take positions one after the other, in commit order,
-- and a rolled-back transaction gives its positions back with its row update. Positions are
-- therefore 1, 2, 3, … without holes, and a reader that sees position p sees every position
-- below it: the feed can be paged from any cursor without skipping anything.
--
-- Events are immutable (their bytes are what webhook signatures cover): UPDATE, DELETE and
-- TRUNCATE are refused like on the journal.

CREATE TABLE event_streams (
    platform_id text PRIMARY KEY REFERENCES platforms (platform_id),
    last_position bigint NOT NULL,
    CONSTRAINT event_streams_last_position_positive CHECK (last_position > 0)
);

CREATE TABLE events (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    position bigint NOT NULL,
    event_id text NOT NULL,
    type text NOT NULL,
    chain text NOT NULL,              -- the resource whose history the event tells (webhook ordering)
    created_at timestamptz NOT NULL,
    body bytea NOT NULL,              -- the event's JSON, exactly as the feed and webhooks send it
    PRIMARY KEY (platform_id, position),
    CONSTRAINT events_event_id_unique UNIQUE (platform_id, event_id),
    CONSTRAINT events_position_positive CHECK (position > 0),
    CONSTRAINT events_event_id_format CHECK (event_id ~ '^evt_[0-9a-f]{24}$'),
    CONSTRAINT events_type_valid CHECK (type IN (
        'order.created', 'order.captured', 'order.failed', 'order.expired',
        'refund.created', 'refund.succeeded', 'refund.failed',
        'settlement.imported',
        'payout.created', 'payout.paid', 'payout.failed',
        'reconciliation.exception_opened', 'reconciliation.exception_resolved',
        'webhook_endpoint.disabled'))
);
CREATE INDEX events_by_type ON events (platform_id, type, position);

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
