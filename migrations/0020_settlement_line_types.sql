-- Every line of a DOKU settlement report is booked (ledger/settlement.py): payments, refunds DOKU
-- deducts, chargebacks, adjustments and fee corrections. A line's kind is a column; a line of a
-- type the mapping does not know is stored as 'unknown' with an exception, never skipped.
--
-- Amounts are signed by their effect on the settlement: a deduction is negative, and on every
-- booked line net = gross - fee. A payment is settled once per invoice (as before); a refund is
-- deducted once (settlement_lines_refund_booked_once), whatever report deducts it.

ALTER TABLE settlement_lines
    ADD COLUMN line_type text NOT NULL DEFAULT 'payment',
    ADD COLUMN refund_id text;

DROP INDEX settlement_lines_booked_once;
CREATE UNIQUE INDEX settlement_lines_booked_once ON settlement_lines (platform_id, invoice_number)
    WHERE status = 'booked' AND line_type = 'payment';
CREATE UNIQUE INDEX settlement_lines_refund_booked_once ON settlement_lines (platform_id, refund_id)
    WHERE status = 'booked' AND refund_id IS NOT NULL;
-- The lines of a report whose exceptions may be re-evaluated when the report is imported again.
CREATE INDEX settlement_lines_exceptions ON settlement_lines (platform_id, report_id, line_no)
    WHERE status = 'exception';

ALTER TABLE settlement_lines
    DROP CONSTRAINT settlement_lines_booked_line_complete,
    DROP CONSTRAINT settlement_lines_exception_kind_valid,
    -- ledger/settlement_report.py LINE_KINDS, and 'unknown' for a type the mapping does not know.
    ADD CONSTRAINT settlement_lines_line_type_valid CHECK (line_type IN (
        'payment', 'refund', 'chargeback', 'adjustment', 'fee_correction', 'unknown')),
    -- A booked line was read in full and adds up; each kind has the signs its rules give it.
    ADD CONSTRAINT settlement_lines_booked_line_complete CHECK (
        status <> 'booked'
        OR (gross IS NOT NULL AND fee IS NOT NULL AND net IS NOT NULL AND net = gross - fee
            AND CASE line_type
                WHEN 'payment' THEN invoice_number IS NOT NULL AND gross > 0 AND fee >= 0 AND refund_id IS NULL
                WHEN 'refund' THEN invoice_number IS NOT NULL AND gross < 0 AND fee <= 0 AND net < 0
                                   AND refund_id IS NOT NULL
                WHEN 'chargeback' THEN invoice_number IS NOT NULL AND gross < 0 AND fee <= 0 AND net < 0
                                       AND refund_id IS NOT NULL
                WHEN 'adjustment' THEN net <> 0 AND refund_id IS NULL
                WHEN 'fee_correction' THEN net <> 0 AND gross = 0 AND refund_id IS NULL
                ELSE false END)),
    ADD CONSTRAINT settlement_lines_exception_kind_valid CHECK (exception_kind IN (
        'invalid_line', 'net_mismatch', 'duplicate_line', 'unknown_invoice', 'not_captured',
        'amount_mismatch', 'fee_mismatch', 'posting_rejected', 'unknown_line_type', 'unmatched_refund',
        'reversal_rejected', 'adjustment'));

-- Reconciliation exceptions: the new settlement kinds, and status_conflict (a notification or
-- status check that contradicts the order's state: ledger/orders.py).
ALTER TABLE reconciliation_exceptions
    DROP CONSTRAINT reconciliation_exceptions_kind_valid,
    ADD CONSTRAINT reconciliation_exceptions_kind_valid CHECK (kind IN (
        'invalid_line', 'net_mismatch', 'duplicate_line', 'unknown_invoice', 'not_captured',
        'amount_mismatch', 'fee_mismatch', 'posting_rejected', 'unknown_line_type', 'unmatched_refund',
        'reversal_rejected', 'adjustment', 'status_conflict'));
CREATE INDEX reconciliation_exceptions_open ON reconciliation_exceptions (platform_id, invoice_number)
    WHERE resolved_at IS NULL;

-- A notification that contradicts the order's state is kept with the outcome 'conflict'.
ALTER TABLE notifications
    DROP CONSTRAINT notifications_outcome_valid,
    ADD CONSTRAINT notifications_outcome_valid CHECK (outcome IN (
        'captured', 'duplicate', 'amount_mismatch', 'unknown_invoice', 'conflict', 'closed', 'ignored',
        'jenius_error', 'unavailable', 'rejected', 'invalid_signature', 'stale_timestamp',
        'unexpected_response', 'malformed_message'));
