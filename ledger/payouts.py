"""Payouts: paying a seller what is available, pending → paid | failed (pure rules).

Rules it enforces:
* A payout never exceeds what the seller can be paid: ``available - debt`` (a debt left by a
  refund after payout is repaid before anything else leaves), checked with the seller's accounts
  locked, so two payouts racing each other cannot together overdraw.
* Requesting moves the amount from ``seller:<id>:available`` to ``payouts:in_transit``; paid moves
  it from in transit to ``platform:bank``; failed puts it back in available. Each step is one
  entry with the key ``payout:<id>:<step>``.
* Idempotent by ``payout_id``: creating the same payout again returns it; confirming a paid
  payout or failing a failed one returns it unchanged; the other way round is
  ``PayoutNotPending``. Reusing a payout id for a different seller or amount is
  ``IdempotencyConflict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import msgspec

from ledger import chart, errors

PayoutStatus = Literal["pending", "paid", "failed"]


class Payout(msgspec.Struct, frozen=True, kw_only=True):
    payout_id: str
    seller_id: str
    amount: int
    status: PayoutStatus
    reference: str | None
    request_entry_id: int
    completion_entry_id: int | None
    failure_reason: str | None
    created_at: datetime
    completed_at: datetime | None


def accounts_touched(seller_id: str, *, with_bank: bool) -> list[str]:
    codes = [chart.seller_available(seller_id), chart.seller_debt(seller_id), chart.PAYOUTS_IN_TRANSIT]
    return [*codes, chart.BANK] if with_bank else codes


def check_payable(seller_id: str, amount: int, balance: Mapping[str, int]) -> None:
    """Raise unless ``amount`` fits in the seller's ``available - debt`` (balances locked)."""
    if type(amount) is not int or amount <= 0:
        raise errors.InvalidEntry([("invalid_amount", f"payout amount must be a positive int, got {amount!r}")])
    payable = balance[chart.seller_available(seller_id)] - balance[chart.seller_debt(seller_id)]
    if amount > payable:
        raise errors.PayoutExceedsAvailable(
            f"payout of {amount} exceeds the {max(payable, 0)} available",
            requested=amount,
            available=max(payable, 0),
        )


def same_payout(payout: Payout, seller_id: str, amount: int) -> Payout:
    """A payout id used again: the same payout is the answer; anything else is a conflict."""
    if (payout.seller_id, payout.amount) != (seller_id, amount):
        raise errors.IdempotencyConflict(
            f"payout {payout.payout_id!r} exists for {payout.seller_id} / {payout.amount}", payout_id=payout.payout_id
        )
    return payout


def check_transition(payout: Payout, status: PayoutStatus) -> bool:
    """True when ``payout`` must move to ``status``; False when it is there already."""
    if payout.status == status:
        return False
    if payout.status != "pending":
        raise errors.PayoutNotPending(f"payout {payout.payout_id!r} is {payout.status}", status=payout.status)
    return True
