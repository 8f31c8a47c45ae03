"""Refunds: requested → succeeded | failed, and what each refund takes from whom (pure).

Rules:
* A refund reserves its amount on the order when requested (under the order's row lock), so two
  refunds racing each other can never together exceed what was captured (``check_refundable``).
* The reversal is computed when the refund succeeds, from the frozen allocation and the cumulative
  reversal so far (``split.reverse``), so any chain of partial refunds adds up to the full reversal.
* A seller's share comes out of pending before settlement and out of available after it; what the
  seller no longer has becomes debt (``bookings.split_seller_debit``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec

from ledger import bookings, chart, errors, split
from ledger.model import EntryDraft
from ledger.orders import Order

RefundMode = Literal["gateway", "manual"]
RefundStatus = Literal["requested", "succeeded", "failed"]


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    refund_id: str
    invoice_number: str
    amount: int
    reason: str
    mode: RefundMode
    reference: str | None
    explicit: dict[str, int] | None
    status: RefundStatus
    reversal: split.Reversal | None
    entry_id: int | None
    doku_request_id: str | None
    failure: dict[str, Any] | None
    created_at: datetime
    completed_at: datetime | None


def check_refundable(order: Order, amount: int, explicit: dict[str, int] | None) -> None:
    """Raise unless ``amount`` can still be refunded from ``order`` (a dry run of the reversal)."""
    if order.status != "captured":
        raise errors.OrderNotCaptured(f"order {order.invoice_number!r} is {order.status}", status=order.status)
    left = order.amount - order.refund_reserved
    if amount > left:
        raise errors.RefundExceedsCaptured(
            f"refund of {amount} exceeds the {left} left to refund", requested=amount, refundable=left
        )
    # The split engine rejects impossible per-party amounts now, not after DOKU paid out.
    split.reverse(order.allocation, order.reversed, amount, order.policy.refund, explicit=explicit)


def accounts_touched(reversal: split.Reversal) -> list[str]:
    """Every account a refund entry with this reversal can touch (to lock them before reading)."""
    sellers = sorted(s for s, amount in reversal.sellers.items() if amount)
    codes = [chart.CLEARING, chart.BANK, chart.COMMISSION, chart.FEES_WITHHELD]
    return codes + [
        c for s in sellers for c in (chart.seller_pending(s), chart.seller_available(s), chart.seller_debt(s))
    ]


def refund_draft(order: Order, refund: Refund, reversal: split.Reversal, balance: Mapping[str, int]) -> EntryDraft:
    """The refund's journal entry, given the locked balances of ``accounts_touched``."""
    net = {part.seller_id: part.net for part in order.allocation.sellers}
    already = order.reversed.sellers if order.reversed is not None else {}
    settled = order.settled_at is not None
    debits = {
        s: bookings.split_seller_debit(
            amount,
            order_settled=settled,
            order_share=net.get(s, 0) - already.get(s, 0),
            pending=balance.get(chart.seller_pending(s), 0),
            available=balance.get(chart.seller_available(s), 0),
        )
        for s, amount in sorted(reversal.sellers.items())
        if amount
    }
    return bookings.refund_entry(
        order.invoice_number,
        refund.refund_id,
        amount=refund.amount,
        mode=refund.mode,
        platform=reversal.platform,
        fee=reversal.fee,
        sellers=debits,
        order_settled=settled,
    )
