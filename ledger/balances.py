"""What a seller is owed, and the lines that explain it (pure records and shaping).

Rule: everything here is read from the ledger (account balances and postings), never recomputed
from orders, so a seller's statement always adds up to the seller's balance. Balances are shown
in each account's normal direction: pending and available are what the platform owes the seller,
debt is what the seller owes the platform, and ``payable = pending + available - debt``.
Payouts in transit have left available and are not part of ``payable``.

The reads are ``ledger.service.balances`` (SQL in ``ledger.store.reports``); the CSV is
``ledger.reports_csv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec

from ledger import chart, errors

SellerAccount = Literal["pending", "available", "debt"]
StatementScope = Literal["pending", "available", "debt", "all"]
ACCOUNTS: tuple[SellerAccount, ...] = ("pending", "available", "debt")


def account_code(seller_id: str, account: SellerAccount) -> str:
    return {"pending": chart.seller_pending, "available": chart.seller_available, "debt": chart.seller_debt}[account](
        seller_id
    )


def seller_codes(seller_id: str) -> list[str]:
    """The seller's account codes: pending, available, debt."""
    return [account_code(seller_id, account) for account in ACCOUNTS]


class SellerBalances(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    pending: int  # captured, not yet settled by DOKU
    available: int  # settled, may be paid out
    debt: int  # refunded after the money was paid out; repaid from the next settlements
    payable: int  # pending + available - debt
    as_of: datetime | None  # None: now


def seller_balances_from(seller_id: str, found: Mapping[str, int], *, as_of: datetime | None) -> SellerBalances:
    """The seller's balances from the ledger's balances by code (``seller_codes``)."""
    pending, available, debt = (found[code] for code in seller_codes(seller_id))
    return SellerBalances(
        seller_id=seller_id,
        pending=pending,
        available=available,
        debt=debt,
        payable=pending + available - debt,
        as_of=as_of,
    )


class SellerStatementLine(msgspec.Struct, frozen=True, kw_only=True):
    """One posting on a seller's account.

    ``change`` moves ``balance``: in a one-account statement the balance is that account's (a
    debt statement shows debt growing as positive); in the ``all`` statement it is ``payable``,
    so a credit to pending or available is positive and a new debt negative. The links come from
    the entry: the order's invoice, the refund, the settlement report, the payout.
    """

    posting_id: int
    entry_id: int
    at: datetime
    effective_at: datetime
    account: SellerAccount
    kind: str  # capture, refund, settlement, payout, payout_paid, payout_failed, …
    change: int
    balance: int
    invoice_number: str | None = None
    refund_id: str | None = None
    report_id: str | None = None
    payout_id: str | None = None


class SellerStatement(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    account: StatementScope
    lines: tuple[SellerStatementLine, ...]
    next_cursor: int | None  # pass as ``after`` for the next page; None on the last page


class SellerPosting(msgspec.Struct, frozen=True, kw_only=True):
    """A posting on one of the seller's accounts, with its entry (as read for a statement)."""

    posting_id: int
    entry_id: int
    account_id: int
    amount: int  # debit positive
    balance_after: int
    created_at: datetime
    kind: str
    effective_at: datetime
    metadata: dict[str, Any]


def statement_scope(account: str) -> tuple[SellerAccount, ...]:
    """The accounts a statement of ``account`` shows; ``ValueError`` for anything else."""
    if account == "all":
        return ACCOUNTS
    for name in ACCOUNTS:
        if account == name:
            return (name,)
    raise ValueError(f"account must be pending, available, debt or all, not {account!r}")


def account_names(seller_id: str, codes_by_id: Mapping[int, str]) -> dict[int, SellerAccount]:
    """Account id -> pending / available / debt; ``SellerNotFound`` unless the seller has all three."""
    by_code = {account_code(seller_id, name): name for name in ACCOUNTS}
    names = {account_id: by_code[code] for account_id, code in codes_by_id.items() if code in by_code}
    if len(names) < len(ACCOUNTS):
        raise errors.SellerNotFound(f"no seller {seller_id!r}", seller_id=seller_id)
    return names


def balances_before_page(postings: Sequence[SellerPosting], names: Mapping[int, SellerAccount]) -> dict[int, int]:
    """Each account's balance just before a page, for the accounts the page posts to: the running
    balance of its first posting there, less that posting (debt is an asset, the others liabilities)."""
    before: dict[int, int] = {}
    for p in postings:
        if p.account_id not in before:
            sign = 1 if names[p.account_id] == "debt" else -1
            before[p.account_id] = p.balance_after - p.amount * sign
    return before


def seller_statement_from(
    seller_id: str,
    account: StatementScope,
    postings: Sequence[SellerPosting],
    *,
    limit: int,
    names: Mapping[int, SellerAccount],
    balances_before: Mapping[int, int],
) -> SellerStatement:
    """A page of the statement from up to ``limit + 1`` postings (one more says there is a next page).

    ``balances_before`` is each account's balance before the first posting (only the ``all``
    statement needs it, to run ``payable`` from there).
    """
    page = postings[:limit]
    current = dict(balances_before)
    lines = []
    for p in page:
        name = names[p.account_id]
        if account == "all":
            current[p.account_id] = p.balance_after
            by_name = {names[a]: b for a, b in current.items()}
            balance = by_name.get("pending", 0) + by_name.get("available", 0) - by_name.get("debt", 0)
            change = -p.amount  # a credit raises pending/available, a debit raises debt
        else:
            balance = p.balance_after
            change = p.amount if name == "debt" else -p.amount
        meta = p.metadata
        lines.append(
            SellerStatementLine(
                posting_id=p.posting_id,
                entry_id=p.entry_id,
                at=p.created_at,
                effective_at=p.effective_at,
                account=name,
                kind=p.kind,
                change=change,
                balance=balance,
                invoice_number=meta.get("invoice_number"),
                refund_id=meta.get("refund_id"),
                report_id=meta.get("report_id"),
                payout_id=meta.get("payout_id"),
            )
        )
    return SellerStatement(
        seller_id=seller_id,
        account=account,
        lines=tuple(lines),
        next_cursor=lines[-1].posting_id if lines and len(postings) > limit else None,
    )
