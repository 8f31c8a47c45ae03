-- The marketplace around the ledger: DOKU credentials, sellers, orders, refunds, the notification
-- inbox, settlement reports, payouts, reconciliation exceptions and HTTP idempotency keys.
-- Tenant-keyed like the ledger: platform_id leads every key and index. The one exception is
-- doku_client_ids, a small routing table (DOKU's Client-Id -> platform) that a distributed
-- deployment would keep as a reference table.

CREATE TABLE gateways (
    platform_id text PRIMARY KEY REFERENCES platforms (platform_id),
    client_id text NOT NULL,
    secret_key text NOT NULL,
    base_url text,
    refund_path text,
    fee_bps integer NOT NULL DEFAULT 0,
    fee_fixed bigint NOT NULL DEFAULT 0,
    fee_bearer text NOT NULL DEFAULT 'platform',
    commission_bps integer NOT NULL DEFAULT 0,
    platform_settlement_id text,
    send_split_instruction boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gateways_fee_bps_range CHECK (fee_bps BETWEEN 0 AND 10000),
    CONSTRAINT gateways_fee_fixed_non_negative CHECK (fee_fixed >= 0),
    CONSTRAINT gateways_commission_bps_range CHECK (commission_bps BETWEEN 0 AND 10000),
    CONSTRAINT gateways_fee_bearer_valid CHECK (fee_bearer IN ('platform', 'sellers'))
);

CREATE TABLE doku_client_ids (
    client_id text PRIMARY KEY,
    platform_id text NOT NULL REFERENCES platforms (platform_id)
);

CREATE TABLE sellers (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    seller_id text NOT NULL,
    name text NOT NULL,
    commission_bps integer,
    doku_settlement_id text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform_id, seller_id),
    CONSTRAINT sellers_id_format CHECK (seller_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT sellers_commission_bps_range CHECK (commission_bps IS NULL OR commission_bps BETWEEN 0 AND 10000)
);
CREATE INDEX sellers_created ON sellers (platform_id, created_at, seller_id);

CREATE TABLE orders (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    invoice_number text NOT NULL,
    amount bigint NOT NULL,
    status text NOT NULL,
    request jsonb NOT NULL,          -- the Jenius fields as received (items with sellers, customer, …)
    policy jsonb NOT NULL,           -- split policy, fee policy and refund policy as frozen
    allocation jsonb NOT NULL,       -- the frozen allocation
    reversed jsonb,                  -- cumulative reversal of all succeeded refunds
    refunded_amount bigint NOT NULL DEFAULT 0,
    refund_reserved bigint NOT NULL DEFAULT 0,   -- succeeded + in-flight refunds
    doku_request_id text NOT NULL,
    doku_error jsonb,
    capture_entry_id bigint,
    captured_at timestamptz,
    settled_at timestamptz,
    settlement_entry_id bigint,
    closed_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform_id, invoice_number),
    CONSTRAINT orders_amount_positive CHECK (amount > 0),
    CONSTRAINT orders_invoice_length CHECK (char_length(invoice_number) BETWEEN 1 AND 64),
    CONSTRAINT orders_status_valid CHECK (status IN ('created', 'send_failed', 'pending', 'captured', 'failed', 'expired')),
    CONSTRAINT orders_refunds_within_amount CHECK (refunded_amount >= 0 AND refund_reserved >= refunded_amount AND refund_reserved <= amount)
);
CREATE INDEX orders_created ON orders (platform_id, created_at, invoice_number);
CREATE INDEX orders_pending ON orders (platform_id, status, created_at) WHERE status IN ('created', 'send_failed', 'pending');
CREATE INDEX orders_unsettled ON orders (platform_id, captured_at) WHERE status = 'captured' AND settled_at IS NULL;

CREATE TABLE refunds (
    platform_id text NOT NULL,
    refund_id text NOT NULL,
    invoice_number text NOT NULL,
    amount bigint NOT NULL,
    reason text NOT NULL,
    mode text NOT NULL,
    reference text,
    explicit jsonb,
    status text NOT NULL,
    reversal jsonb,
    entry_id bigint,
    doku_request_id text,
    failure jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (platform_id, refund_id),
    FOREIGN KEY (platform_id, invoice_number) REFERENCES orders (platform_id, invoice_number),
    CONSTRAINT refunds_amount_positive CHECK (amount > 0),
    CONSTRAINT refunds_mode_valid CHECK (mode IN ('gateway', 'manual')),
    CONSTRAINT refunds_status_valid CHECK (status IN ('requested', 'succeeded', 'failed'))
);
CREATE INDEX refunds_order ON refunds (platform_id, invoice_number, created_at);

CREATE TABLE notifications (
    platform_id text NOT NULL,
    notification_id bigint GENERATED ALWAYS AS IDENTITY,
    request_id text,
    invoice_number text,
    transaction_status text,
    amount bigint,
    body bytea NOT NULL,
    outcome text NOT NULL,
    detail text,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform_id, notification_id)
);
CREATE INDEX notifications_invoice ON notifications (platform_id, invoice_number, received_at);

CREATE TABLE settlement_reports (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    report_id text NOT NULL,
    source_name text NOT NULL,
    content_hash bytea NOT NULL,
    line_count integer NOT NULL,
    summary jsonb NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform_id, report_id),
    CONSTRAINT settlement_reports_content_unique UNIQUE (platform_id, content_hash)
);

CREATE TABLE settlement_lines (
    platform_id text NOT NULL,
    report_id text NOT NULL,
    line_no integer NOT NULL,
    invoice_number text,
    gross bigint,
    fee bigint,
    net bigint,
    settled_on date,
    status text NOT NULL,
    entry_id bigint,
    detail text,
    PRIMARY KEY (platform_id, report_id, line_no),
    FOREIGN KEY (platform_id, report_id) REFERENCES settlement_reports (platform_id, report_id),
    CONSTRAINT settlement_lines_status_valid CHECK (status IN ('booked', 'exception'))
);
CREATE UNIQUE INDEX settlement_lines_booked_once ON settlement_lines (platform_id, invoice_number)
    WHERE status = 'booked';

CREATE TABLE payouts (
    platform_id text NOT NULL,
    payout_id text NOT NULL,
    seller_id text NOT NULL,
    amount bigint NOT NULL,
    status text NOT NULL,
    reference text,
    request_entry_id bigint NOT NULL,
    completion_entry_id bigint,
    failure_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (platform_id, payout_id),
    FOREIGN KEY (platform_id, seller_id) REFERENCES sellers (platform_id, seller_id),
    CONSTRAINT payouts_amount_positive CHECK (amount > 0),
    CONSTRAINT payouts_status_valid CHECK (status IN ('pending', 'paid', 'failed'))
);
CREATE INDEX payouts_seller ON payouts (platform_id, seller_id, created_at);
CREATE INDEX payouts_created ON payouts (platform_id, created_at, payout_id);

CREATE TABLE reconciliation_exceptions (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    exception_id bigint GENERATED ALWAYS AS IDENTITY,
    kind text NOT NULL,
    source text NOT NULL,
    invoice_number text,
    expected bigint,
    actual bigint,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    PRIMARY KEY (platform_id, exception_id)
);
CREATE INDEX reconciliation_exceptions_created ON reconciliation_exceptions (platform_id, created_at);

CREATE TABLE idempotency_keys (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    key text NOT NULL,
    request_hash bytea NOT NULL,
    status text NOT NULL DEFAULT 'in_progress',
    response_status integer,
    response_body bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform_id, key),
    CONSTRAINT idempotency_keys_status_valid CHECK (status IN ('in_progress', 'done'))
);
