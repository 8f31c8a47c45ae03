-- Webhook endpoints and their deliveries (ledger/store/webhooks.py; the rules: ledger/webhooks.py).
--
-- A delivery row is written for every enabled endpoint subscribed to an event, in the event's own
-- transaction (the fan-out is part of the outbox write), so an event committed is an event that
-- will be delivered, whatever happens to the process afterwards. The relay claims due deliveries
-- with a lease (locked_until + lease token), sends them outside any transaction, and records each
-- attempt; a process that dies mid-delivery leaves a lease that lapses, and the delivery is sent
-- again (at least once). Deliveries of one chain (an order and its refunds, a payout, …) are sent
-- to an endpoint one after the other, in the order the events were written (their seq, which
-- follows the order of the changes: a change to a resource waits for the one before it to commit):
-- only the oldest pending delivery of a chain may be claimed.
--
-- The relay's queue of due deliveries (webhook_deliveries_due) is the one index that does not
-- lead with platform_id: one relay serves every platform, like doku_client_ids routes every
-- platform's notifications.

CREATE TABLE webhook_endpoints (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    endpoint_id text NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL,
    secret text NOT NULL,
    status text NOT NULL DEFAULT 'enabled',
    created_at timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz,
    disabled_reason text,
    PRIMARY KEY (platform_id, endpoint_id),
    CONSTRAINT webhook_endpoints_status_valid CHECK (status IN ('enabled', 'disabled', 'deleted')),
    CONSTRAINT webhook_endpoints_events_nonempty CHECK (cardinality(events) > 0),
    CONSTRAINT webhook_endpoints_disabled_matches_status CHECK ((status = 'enabled') = (disabled_at IS NULL))
);
CREATE INDEX webhook_endpoints_enabled ON webhook_endpoints (platform_id) WHERE status = 'enabled';

CREATE TABLE webhook_deliveries (
    platform_id text NOT NULL,
    delivery_id bigint GENERATED ALWAYS AS IDENTITY,
    endpoint_id text NOT NULL,
    event_id text NOT NULL,
    seq bigint NOT NULL,                      -- the event's
    chain text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempt_count integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    lease text,
    last_attempt_at timestamptz,
    last_response_status integer,
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform_id, delivery_id),
    CONSTRAINT webhook_deliveries_endpoint_fkey FOREIGN KEY (platform_id, endpoint_id)
        REFERENCES webhook_endpoints (platform_id, endpoint_id),
    CONSTRAINT webhook_deliveries_event_fkey FOREIGN KEY (platform_id, event_id)
        REFERENCES events (platform_id, event_id),
    CONSTRAINT webhook_deliveries_status_valid CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    CONSTRAINT webhook_deliveries_delivered_matches_status CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
    CONSTRAINT webhook_deliveries_attempts_non_negative CHECK (attempt_count >= 0),
    CONSTRAINT webhook_deliveries_lease_only_pending CHECK (status = 'pending' OR lease IS NULL)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_chain ON webhook_deliveries (platform_id, endpoint_id, chain, seq)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (platform_id, endpoint_id, delivery_id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (platform_id, event_id);

CREATE TABLE webhook_attempts (
    platform_id text NOT NULL,
    delivery_id bigint NOT NULL,
    attempt integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    response_status integer,
    error text,
    duration_ms integer NOT NULL,
    PRIMARY KEY (platform_id, delivery_id, attempt),
    CONSTRAINT webhook_attempts_delivery_fkey FOREIGN KEY (platform_id, delivery_id)
        REFERENCES webhook_deliveries (platform_id, delivery_id),
    CONSTRAINT webhook_attempts_attempt_positive CHECK (attempt > 0),
    CONSTRAINT webhook_attempts_outcome CHECK (response_status IS NOT NULL OR error IS NOT NULL)
);
