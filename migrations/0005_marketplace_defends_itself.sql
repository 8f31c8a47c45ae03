-- The marketplace tables defend their own invariants, as the ledger tables of 0001 do.
--
-- Every constraint is named so a refusal can be translated by name (STYLE.md):
--   * foreign keys (`<table>_<what>_fkey`): every `*_entry_id` names a journal entry of the same
--     platform (composite with platform_id, so rows and their entries stay co-located when the
--     schema is distributed by platform_id); notifications, the one tenant table without a path
--     to platforms, references its platform (refunds, payouts and settlement_lines already reach
--     it through orders, sellers and settlement_reports, so a direct key would never be the one
--     to refuse a row);
--   * status checks (`<table>_<what>_matches_status` and friends): a row's status and the entry,
--     timestamps and details it implies are written together or not at all;
--   * enumerations (`<table>_<column>_valid`): the stable codes the application writes, listed
--     below with where each comes from. They are CHECKs, not enum types, so a later migration can
--     extend a list in one transaction: DROP CONSTRAINT x, ADD CONSTRAINT x CHECK (... new list).
--
-- The application writes each row in one statement per state change (the entry is posted first, then
-- the row is inserted or updated with its id, status and timestamps together), so the CHECKs hold
-- after every statement. The foreign keys are nevertheless DEFERRABLE INITIALLY DEFERRED, like the
-- ledger's own commit-time checks: a writer may record a row before the entry it names, as long as
-- both are there at commit.
--
-- Added without NOT VALID: the runner applies a migration in one transaction, so a separate
-- VALIDATE CONSTRAINT would run under the same locks and gain nothing. The constraints of one
-- table are added by one ALTER TABLE, so its CHECKs are verified in a single scan. On an existing
-- database whose rows break a constraint the migration fails and changes nothing.
--
-- Not constrained here:
--   * journal_entries.kind: LedgerStore posts any kind (tests post 'test', 'transfer', ...); the
--     marketplace's kinds are those of ledger/bookings.py.
--   * a paid payout's completion entry: tests/integration/test_reconciliation.py marks a pending
--     payout paid behind the ledger's back (status only) to prove the reconciliation notices; until
--     that test corrupts the books another way, 'paid' only requires completion_entry_id and
--     completed_at to come together (payouts_completion_complete).
--   * a manual refund's reference: the API requires one, ledger.refunds.begin_refund does not (and
--     the tests' marketplace fixtures book manual refunds without one).
--   * an idempotency key in progress without an answer: the application never leaves one there,
--     but tests/api/test_strictness.py turns a done key back into a fresh claim by its status alone;
--     and 0004's phases may keep progress on a claim.
--   * invoice numbers of notifications, reconciliation exceptions and settlement lines: they record
--     what DOKU sent, unknown invoices included.

-- orders ----------------------------------------------------------------------------------------

ALTER TABLE orders
    ADD CONSTRAINT orders_capture_entry_fkey FOREIGN KEY (platform_id, capture_entry_id)
        REFERENCES journal_entries (platform_id, entry_id) DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT orders_settlement_entry_fkey FOREIGN KEY (platform_id, settlement_entry_id)
        REFERENCES journal_entries (platform_id, entry_id) DEFERRABLE INITIALLY DEFERRED,
    -- Captured exactly when there is a capture entry; an order that was never captured (created,
    -- send_failed, pending, failed, expired) has none. Capture never leaves 'captured'.
    ADD CONSTRAINT orders_capture_matches_status CHECK (
        CASE WHEN status = 'captured' THEN capture_entry_id IS NOT NULL AND captured_at IS NOT NULL
             ELSE capture_entry_id IS NULL AND captured_at IS NULL END),
    ADD CONSTRAINT orders_settlement_complete CHECK ((settled_at IS NULL) = (settlement_entry_id IS NULL)),
    ADD CONSTRAINT orders_settled_only_if_captured CHECK (settled_at IS NULL OR status = 'captured'),
    -- Refunds are reserved only on a captured order.
    ADD CONSTRAINT orders_refunds_only_if_captured CHECK (refund_reserved = 0 OR status = 'captured');

-- refunds ---------------------------------------------------------------------------------------

ALTER TABLE refunds
    ADD CONSTRAINT refunds_entry_fkey FOREIGN KEY (platform_id, entry_id)
        REFERENCES journal_entries (platform_id, entry_id) DEFERRABLE INITIALLY DEFERRED,
    -- requested: nothing yet; succeeded: the reversal and its entry; failed: why, and nothing posted.
    ADD CONSTRAINT refunds_entry_matches_status CHECK (
        CASE WHEN status = 'succeeded' THEN entry_id IS NOT NULL AND reversal IS NOT NULL
             ELSE entry_id IS NULL AND reversal IS NULL END),
    ADD CONSTRAINT refunds_failure_matches_status CHECK ((status = 'failed') = (failure IS NOT NULL)),
    ADD CONSTRAINT refunds_completed_at_matches_status CHECK ((status = 'requested') = (completed_at IS NULL)),
    -- A gateway refund is sent to DOKU with its Request-Id; a manual one never goes to DOKU.
    ADD CONSTRAINT refunds_doku_request_id_matches_mode CHECK ((mode = 'gateway') = (doku_request_id IS NOT NULL));

-- payouts ---------------------------------------------------------------------------------------

ALTER TABLE payouts
    ADD CONSTRAINT payouts_request_entry_fkey FOREIGN KEY (platform_id, request_entry_id)
        REFERENCES journal_entries (platform_id, entry_id) DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT payouts_completion_entry_fkey FOREIGN KEY (platform_id, completion_entry_id)
        REFERENCES journal_entries (platform_id, entry_id) DEFERRABLE INITIALLY DEFERRED,
    -- A payout is completed by one entry at one moment: both or neither.
    ADD CONSTRAINT payouts_completion_complete CHECK ((completion_entry_id IS NULL) = (completed_at IS NULL)),
    ADD CONSTRAINT payouts_pending_not_completed CHECK (status <> 'pending' OR completion_entry_id IS NULL),
    ADD CONSTRAINT payouts_failed_completed CHECK (status <> 'failed' OR completion_entry_id IS NOT NULL),
    ADD CONSTRAINT payouts_failure_reason_matches_status CHECK ((status = 'failed') = (failure_reason IS NOT NULL));

-- settlement_lines ------------------------------------------------------------------------------

ALTER TABLE settlement_lines
    ADD CONSTRAINT settlement_lines_entry_fkey FOREIGN KEY (platform_id, entry_id)
        REFERENCES journal_entries (platform_id, entry_id) DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT settlement_lines_entry_matches_status CHECK ((status = 'booked') = (entry_id IS NOT NULL)),
    -- An exception line says why ("<kind>: <detail>"); a booked line needs no explanation.
    ADD CONSTRAINT settlement_lines_detail_matches_status CHECK ((status = 'exception') = (detail IS NOT NULL)),
    -- A booked line was read in full and adds up (so settlement_lines_booked_once sees its invoice).
    ADD CONSTRAINT settlement_lines_booked_line_complete CHECK (
        status <> 'booked'
        OR (invoice_number IS NOT NULL AND gross IS NOT NULL AND fee IS NOT NULL AND net IS NOT NULL
            AND gross > 0 AND fee >= 0 AND net = gross - fee));

-- notifications ---------------------------------------------------------------------------------

ALTER TABLE notifications
    ADD CONSTRAINT notifications_platform_id_fkey FOREIGN KEY (platform_id) REFERENCES platforms (platform_id),
    -- What became of a delivery (api/notifications.py):
    --   verified, then applied by api/payments.py apply_transaction_status:
    --     captured, duplicate, amount_mismatch, unknown_invoice   (ledger.orders.CaptureResult.outcome)
    --     closed, ignored                                         (FAILED/EXPIRED/TIMEOUT, anything else)
    --   refused by verification: the code of the jenius.errors.JeniusError raised
    --     jenius_error, unavailable, rejected, invalid_signature, stale_timestamp, unexpected_response,
    --     malformed_message
    ADD CONSTRAINT notifications_outcome_valid CHECK (outcome IN (
        'captured', 'duplicate', 'amount_mismatch', 'unknown_invoice', 'closed', 'ignored',
        'jenius_error', 'unavailable', 'rejected', 'invalid_signature', 'stale_timestamp',
        'unexpected_response', 'malformed_message'));

-- reconciliation_exceptions ---------------------------------------------------------------------

ALTER TABLE reconciliation_exceptions
    -- Kinds: ledger/settlement.py EXCEPTION_KINDS (settlement report lines); amount_mismatch and
    -- unknown_invoice are also the capture outcomes api/payments.py records.
    ADD CONSTRAINT reconciliation_exceptions_kind_valid CHECK (kind IN (
        'invalid_line', 'net_mismatch', 'duplicate_line', 'unknown_invoice', 'not_captured',
        'amount_mismatch', 'fee_mismatch', 'posting_rejected')),
    -- Sources: ledger/settlement.py SOURCE, and the sources apply_transaction_status is called with
    -- (api/notifications.py, api/payments.py check_order_status).
    ADD CONSTRAINT reconciliation_exceptions_source_valid CHECK (source IN (
        'settlement_report', 'notification', 'status_check'));

-- idempotency_keys ------------------------------------------------------------------------------

ALTER TABLE idempotency_keys
    -- A done key replays the answer it stored (api/idempotency.py), so it has one.
    ADD CONSTRAINT idempotency_keys_done_has_response CHECK (
        status <> 'done' OR (response_status IS NOT NULL AND response_body IS NOT NULL));
