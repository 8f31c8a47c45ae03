"""The marketplace's chart of accounts, per platform.

Money's path through the accounts (balances in each account's normal direction):

    capture        Dr doku:clearing (gross)      Cr seller:<id>:pending (seller net) …
                                                 Cr platform:commission (platform share)
                                                 Cr doku:fees_withheld (DOKU's fee)
    refund         Dr seller:<id>:pending|available, or seller:<id>:debt when the money is gone
                   Dr platform:commission, Dr doku:fees_withheld (only if DOKU returns its fee)
                   Cr doku:clearing (gateway refund, chargeback), platform:bank (manual refund)
                   or doku:deposit_refunds_in_flight (paid by DOKU's Refund Service from the deposit)
    settlement     Dr platform:bank (net) + Dr doku:fees_withheld (fee)  Cr doku:clearing
                   Dr seller:<id>:pending  Cr seller:<id>:debt (repaid first), Cr seller:<id>:available
    deduction      Dr doku:clearing  Cr platform:bank   (a refund line: DOKU deducts a gateway refund)
    adjustment     Dr platform:bank  Cr doku:suspense   (signed; until an operator books it elsewhere)
    fee correction Dr platform:bank  Cr platform:commission   (signed; the platform bears fee differences)
    deposit        Dr doku:refund_deposit  Cr platform:bank   (a top-up of the Refund Service deposit)
                   Dr doku:deposit_refunds_in_flight  Cr doku:refund_deposit  (DOKU paid a deposit refund)
    payout         Dr seller:<id>:available  Cr payouts:in_transit;  then when confirmed
                   Dr payouts:in_transit  Cr platform:bank  (or back to available if it failed)

After a full cycle (capture, refunds, DOKU's settlement of both, deposit refunds paid) the
clearing, suspense and fee accounts (``CLEARING_ACCOUNTS``) are exactly zero; whatever they hold
before is explained by open items (``ledger.reconciliation``).
"""

from __future__ import annotations

from ledger.model import AccountSpec

CLEARING = "doku:clearing"  # what DOKU owes us for captured payments not yet settled
FEES_WITHHELD = "doku:fees_withheld"  # DOKU's fee, deducted by DOKU at settlement
COMMISSION = "platform:commission"  # the platform's share (net of the DOKU fee it bears)
BANK = "platform:bank"  # the platform's bank account as the ledger sees it
PAYOUTS_IN_TRANSIT = "payouts:in_transit"  # payouts requested, not yet confirmed
SUSPENSE = "doku:suspense"  # money DOKU added or deducted that no rule explains yet (adjustments)
REFUND_DEPOSIT = "doku:refund_deposit"  # the platform's pre-funded deposit behind DOKU's Refund Service
DEPOSIT_IN_FLIGHT = "doku:deposit_refunds_in_flight"  # refunds the Refund Service has not confirmed paying

# Accounts that must come back to zero: every rupiah they hold is an open item or unexplained.
CLEARING_ACCOUNTS = (CLEARING, SUSPENSE, FEES_WITHHELD, DEPOSIT_IN_FLIGHT)


def platform_accounts() -> list[AccountSpec]:
    return [
        # Clearing can go negative: a gateway refund after settlement is netted by DOKU later.
        AccountSpec(code=CLEARING, kind="asset", allow_negative=True),
        AccountSpec(code=FEES_WITHHELD, kind="liability"),
        # Negative when a DOKU fee the platform bears exceeds its commission.
        AccountSpec(code=COMMISSION, kind="revenue", allow_negative=True),
        # The ledger does not see the bank's opening balance, so manual refunds may take it below zero.
        AccountSpec(code=BANK, kind="asset", allow_negative=True),
        AccountSpec(code=PAYOUTS_IN_TRANSIT, kind="liability"),
        # Credit when DOKU added money no rule explains, debit when it deducted some.
        AccountSpec(code=SUSPENSE, kind="liability", allow_negative=True),
        AccountSpec(code=REFUND_DEPOSIT, kind="asset"),
        AccountSpec(code=DEPOSIT_IN_FLIGHT, kind="liability"),
    ]


def seller_pending(seller_id: str) -> str:
    return f"seller:{seller_id}:pending"


def seller_available(seller_id: str) -> str:
    return f"seller:{seller_id}:available"


def seller_debt(seller_id: str) -> str:
    return f"seller:{seller_id}:debt"


def seller_accounts(seller_id: str) -> list[AccountSpec]:
    return [
        AccountSpec(code=seller_pending(seller_id), kind="liability", metadata={"seller_id": seller_id}),
        AccountSpec(code=seller_available(seller_id), kind="liability", metadata={"seller_id": seller_id}),
        AccountSpec(code=seller_debt(seller_id), kind="asset", metadata={"seller_id": seller_id}),
    ]
