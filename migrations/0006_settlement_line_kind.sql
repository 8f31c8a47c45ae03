-- A settlement line's exception kind gets its own column, so nothing parses it back out of the
-- text of ``detail`` ("<kind>: <why>", which stays as the line's explanation). Kinds are
-- ledger/settlement.py EXCEPTION_KINDS, the same codes as reconciliation_exceptions.kind.
ALTER TABLE settlement_lines ADD COLUMN exception_kind text;

UPDATE settlement_lines SET exception_kind = split_part(detail, ':', 1) WHERE status = 'exception';

ALTER TABLE settlement_lines
    -- A booked line has no exception kind.
    ADD CONSTRAINT settlement_lines_exception_kind_only_on_exceptions CHECK (
        status = 'exception' OR exception_kind IS NULL),
    ADD CONSTRAINT settlement_lines_exception_kind_valid CHECK (exception_kind IN (
        'invalid_line', 'net_mismatch', 'duplicate_line', 'unknown_invoice', 'not_captured',
        'amount_mismatch', 'fee_mismatch', 'posting_rejected'));
