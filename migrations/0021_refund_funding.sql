-- How a refund is paid and when its money has finally left the books (ledger/refunds.py):
--   gateway     DOKU paid it; cleared when a refund line of DOKU's report deducts it
--   manual      the platform's bank paid it; cleared at once
--   deposit     DOKU's Refund Service pays it from the platform's deposit; cleared when DOKU confirms
--   chargeback  DOKU took the payment back (a chargeback line); cleared by that line
-- A refund by line item keeps the items it returned (item index -> quantity).

ALTER TABLE refunds
    ADD COLUMN line_items jsonb,
    ADD COLUMN cleared_at timestamptz,
    ADD COLUMN cleared_by text,
    ADD COLUMN clearing_entry_id bigint;

ALTER TABLE refunds
    DROP CONSTRAINT refunds_mode_valid,
    ADD CONSTRAINT refunds_mode_valid CHECK (mode IN ('gateway', 'manual', 'deposit', 'chargeback')),
    ADD CONSTRAINT refunds_clearing_entry_fkey FOREIGN KEY (platform_id, clearing_entry_id)
        REFERENCES journal_entries (platform_id, entry_id) DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT refunds_cleared_complete CHECK ((cleared_at IS NULL) = (cleared_by IS NULL)),
    ADD CONSTRAINT refunds_cleared_only_if_succeeded CHECK (cleared_at IS NULL OR status = 'succeeded'),
    -- A deduction, a deposit payment and a chargeback are entries of their own; a manual refund
    -- leaves through the bank in its refund entry.
    ADD CONSTRAINT refunds_clearing_entry_matches_mode CHECK (
        clearing_entry_id IS NULL OR (cleared_at IS NOT NULL AND mode <> 'manual'));

-- Refunds awaiting DOKU's deduction or its Refund Service, listed by the reconciliation.
CREATE INDEX refunds_uncleared ON refunds (platform_id, mode, completed_at)
    WHERE status = 'succeeded' AND cleared_at IS NULL;

-- The accounts every platform now has (ledger/chart.py platform_accounts): doku:suspense (what
-- DOKU added or deducted that no rule explains yet), doku:refund_deposit (the deposit behind
-- DOKU's Refund Service) and doku:deposit_refunds_in_flight (deposit refunds DOKU has not paid).
INSERT INTO accounts (platform_id, code, kind, allow_negative)
SELECT p.platform_id, a.code, a.kind, a.allow_negative
  FROM platforms p
 CROSS JOIN (VALUES ('doku:suspense', 'liability', true),
                    ('doku:refund_deposit', 'asset', false),
                    ('doku:deposit_refunds_in_flight', 'liability', false)) AS a (code, kind, allow_negative)
ON CONFLICT (platform_id, code) DO NOTHING;

-- Manual refunds made before this migration left through the bank at once.
UPDATE refunds SET cleared_at = completed_at, cleared_by = 'bank'
 WHERE status = 'succeeded' AND mode = 'manual' AND cleared_at IS NULL;
