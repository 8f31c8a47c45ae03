"""Journal entries for each marketplace event, built from frozen allocations: pure functions.

Rule: every event has exactly one entry with a deterministic idempotency key
(``capture:<invoice>``, ``refund:<refund_id>``, ``settlement:<invoice>``, ``deduction:<refund_id>``,
``line:<report_id>:<line_no>``, ``deposit:<top_up_id>``, ``deposit_paid:<refund_id>``,
``payout:<id>:<step>``),
so replaying an event can never post it twice; the entry is balanced by construction.
See ``ledger.chart`` for the path money takes through the accounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import msgspec

from ledger import chart
from ledger.journal import build_entry
from ledger.model import EntryDraft


class SellerDebit(msgspec.Struct, frozen=True, kw_only=True):
    """Where a seller's refund share comes from."""

    pending: int = 0
    available: int = 0
    debt: int = 0  # the part the seller no longer has: it becomes a receivable

    @property
    def total(self) -> int:
        return self.pending + self.available + self.debt


def split_seller_debit(
    amount: int, *, order_settled: bool, order_share: int, pending: int, available: int
) -> SellerDebit:
    """Take a seller's refund share from where the order's money sits, then from what is left.

    Before settlement the order's own share (``order_share``: its allocation net less what its
    refunds already took) is still in pending; only that much comes out of pending, because the
    rest of pending belongs to the seller's other orders. After settlement the share comes out of
    available. Whatever is beyond that — a refund that claws back a commission the platform keeps,
    or money already paid out — comes out of available, and what available no longer holds
    becomes debt.
    """
    if amount < 0:
        raise ValueError("amount must be >= 0")
    from_pending = 0 if order_settled else min(amount, max(order_share, 0), max(pending, 0))
    rest = amount - from_pending
    from_available = min(rest, max(available, 0))
    return SellerDebit(pending=from_pending, available=from_available, debt=rest - from_available)


def split_settlement_move(amount: int, *, debt: int) -> tuple[int, int]:
    """A settled share repays the seller's debt first; returns ``(to_debt, to_available)``."""
    to_debt = min(amount, max(debt, 0))
    return to_debt, amount - to_debt


def _entry(
    kind: str, key: str, postings: Mapping[str, int], *, ref: str, at: datetime | None, meta: dict[str, str]
) -> EntryDraft:
    return build_entry(
        kind=kind, idempotency_key=key, postings=dict(postings), external_ref=ref, effective_at=at, metadata=meta
    )


def _add(postings: dict[str, int], account: str, amount: int) -> None:
    postings[account] = postings.get(account, 0) + amount


def capture_entry(
    invoice_number: str, *, gross: int, fee: int, platform: int, sellers: Mapping[str, int], at: datetime | None = None
) -> EntryDraft:
    """Debit clearing for the gross; credit each seller's pending, the platform and DOKU's fee."""
    postings: dict[str, int] = {}
    _add(postings, chart.CLEARING, gross)
    for seller_id, net in sorted(sellers.items()):
        _add(postings, chart.seller_pending(seller_id), -net)
    _add(postings, chart.COMMISSION, -platform)
    _add(postings, chart.FEES_WITHHELD, -fee)
    return _entry(
        "capture",
        f"capture:{invoice_number}",
        postings,
        ref=invoice_number,
        at=at,
        meta={"invoice_number": invoice_number},
    )


def refund_entry(
    invoice_number: str,
    refund_id: str,
    *,
    amount: int,
    mode: str,
    platform: int,
    fee: int,
    sellers: Mapping[str, SellerDebit],
    order_settled: bool = False,
    at: datetime | None = None,
) -> EntryDraft:
    """Reverse a refund's share from each party; the money leaves by the refund's mode (``exit_account``).

    A fee DOKU gives back is taken off the fee it still withholds; once the order is settled
    that fee is gone from ``doku:fees_withheld``, so DOKU owes it back through clearing instead.
    """
    postings: dict[str, int] = {}
    _add(postings, exit_account(mode), -amount)
    for seller_id, debit in sorted(sellers.items()):
        _add(postings, chart.seller_pending(seller_id), debit.pending)
        _add(postings, chart.seller_available(seller_id), debit.available)
        _add(postings, chart.seller_debt(seller_id), debit.debt)
    _add(postings, chart.COMMISSION, platform)
    _add(postings, chart.CLEARING if order_settled else chart.FEES_WITHHELD, fee)
    return _entry(
        "refund",
        f"refund:{refund_id}",
        postings,
        ref=invoice_number,
        at=at,
        meta={"invoice_number": invoice_number, "refund_id": refund_id, "mode": mode},
    )


def exit_account(mode: str) -> str:
    """Where a refund's money leaves the books: DOKU paid it (and deducts it later: clearing), the
    platform's bank paid it, or DOKU's Refund Service pays it from the deposit (in flight until
    DOKU confirms)."""
    if mode in ("gateway", "chargeback"):
        return chart.CLEARING
    if mode == "deposit":
        return chart.DEPOSIT_IN_FLIGHT
    return chart.BANK


def deduction_entry(
    invoice_number: str, refund_id: str, *, amount: int, report_id: str, line_no: int, at: datetime | None = None
) -> EntryDraft:
    """DOKU deducted a gateway refund (less any fee it gave back) from a settlement."""
    return _entry(
        "refund_deduction",
        f"deduction:{refund_id}",
        {chart.CLEARING: amount, chart.BANK: -amount},
        ref=invoice_number,
        at=at,
        meta={
            "invoice_number": invoice_number,
            "refund_id": refund_id,
            "report_id": report_id,
            "line_no": str(line_no),
        },
    )


def report_adjustment_entry(
    report_id: str,
    line_no: int,
    *,
    amount: int,
    against: str,
    kind: str,
    invoice_number: str | None,
    at: datetime | None = None,
) -> EntryDraft:
    """DOKU added (+) or deducted (-) ``amount`` on a report line: the bank against ``against``."""
    meta = {"report_id": report_id, "line_no": str(line_no)}
    if invoice_number:
        meta["invoice_number"] = invoice_number
    return _entry(
        kind,
        f"line:{report_id}:{line_no}",
        {chart.BANK: amount, against: -amount},
        ref=invoice_number or report_id,
        at=at,
        meta=meta,
    )


def suspense_release_entry(exception_id: int, *, amount: int, to: str, at: datetime | None = None) -> EntryDraft:
    """An operator books what an adjustment left in doku:suspense where it belongs (``to``)."""
    return _entry(
        "suspense_release",
        f"suspense:{exception_id}",
        {chart.SUSPENSE: amount, to: -amount},
        ref=f"exception:{exception_id}",
        at=at,
        meta={"exception_id": str(exception_id)},
    )


def deposit_top_up_entry(top_up_id: str, amount: int, reference: str, at: datetime | None = None) -> EntryDraft:
    """The platform tops up its deposit behind DOKU's Refund Service from its bank."""
    return _entry(
        "deposit_top_up",
        f"deposit:{top_up_id}",
        {chart.REFUND_DEPOSIT: amount, chart.BANK: -amount},
        ref=top_up_id,
        at=at,
        meta={"top_up_id": top_up_id, "reference": reference},
    )


def deposit_paid_entry(
    invoice_number: str, refund_id: str, amount: int, reference: str | None, at: datetime | None = None
) -> EntryDraft:
    """DOKU's Refund Service confirmed paying a deposit refund: it is no longer in flight."""
    meta = {"invoice_number": invoice_number, "refund_id": refund_id}
    if reference:
        meta["reference"] = reference
    return _entry(
        "deposit_refund_paid",
        f"deposit_paid:{refund_id}",
        {chart.DEPOSIT_IN_FLIGHT: amount, chart.REFUND_DEPOSIT: -amount},
        ref=invoice_number,
        at=at,
        meta=meta,
    )


def settlement_entry(
    invoice_number: str,
    *,
    net: int,
    fee: int,
    moves: Mapping[str, tuple[int, int]],
    report_id: str,
    at: datetime | None = None,
) -> EntryDraft:
    """Book DOKU's payout for one order and release each seller's share from pending.

    ``moves`` maps seller -> ``(to_debt, to_available)`` (see ``split_settlement_move``).
    """
    postings: dict[str, int] = {}
    _add(postings, chart.BANK, net)
    _add(postings, chart.FEES_WITHHELD, fee)
    _add(postings, chart.CLEARING, -(net + fee))
    for seller_id, (to_debt, to_available) in sorted(moves.items()):
        _add(postings, chart.seller_pending(seller_id), to_debt + to_available)
        _add(postings, chart.seller_debt(seller_id), -to_debt)
        _add(postings, chart.seller_available(seller_id), -to_available)
    return _entry(
        "settlement",
        f"settlement:{invoice_number}",
        postings,
        ref=invoice_number,
        at=at,
        meta={"invoice_number": invoice_number, "report_id": report_id},
    )


def payout_request_entry(payout_id: str, seller_id: str, amount: int, at: datetime | None = None) -> EntryDraft:
    return _entry(
        "payout",
        f"payout:{payout_id}:request",
        {chart.seller_available(seller_id): amount, chart.PAYOUTS_IN_TRANSIT: -amount},
        ref=payout_id,
        at=at,
        meta={"payout_id": payout_id, "seller_id": seller_id},
    )


def payout_paid_entry(payout_id: str, seller_id: str, amount: int, at: datetime | None = None) -> EntryDraft:
    return _entry(
        "payout_paid",
        f"payout:{payout_id}:paid",
        {chart.PAYOUTS_IN_TRANSIT: amount, chart.BANK: -amount},
        ref=payout_id,
        at=at,
        meta={"payout_id": payout_id, "seller_id": seller_id},
    )


def payout_failed_entry(payout_id: str, seller_id: str, amount: int, at: datetime | None = None) -> EntryDraft:
    return _entry(
        "payout_failed",
        f"payout:{payout_id}:failed",
        {chart.PAYOUTS_IN_TRANSIT: amount, chart.seller_available(seller_id): -amount},
        ref=payout_id,
        at=at,
        meta={"payout_id": payout_id, "seller_id": seller_id},
    )
