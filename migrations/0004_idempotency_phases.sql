-- Idempotency keys become recovery points (the "atomic phases" design for Postgres idempotency
-- keys): each phase of a request commits its effect together with the key's progress, so a retry
-- after a crash resumes after the last committed phase and never repeats one.
--   phases        the phases committed so far, in order
--   owner         the request execution that holds the key between phases
--   locked_until  its lease: another execution with the same key waits (409 in progress) until it
--                 lapses, then takes over; a crashed process never renews it
ALTER TABLE idempotency_keys
    ADD COLUMN phases text[] NOT NULL DEFAULT '{}',
    ADD COLUMN owner text,
    ADD COLUMN locked_until timestamptz,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- Pruning reads keys by age, per platform like every other index.
CREATE INDEX idempotency_keys_created ON idempotency_keys (platform_id, created_at);
