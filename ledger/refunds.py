"""Refunds: requested → succeeded | failed, and what each refund takes from whom (pure).

How a refund is paid (``mode``) and when its money has finally left (``cleared_at``):

    gateway     DOKU pays the customer and deducts it from a later settlement: succeeded when DOKU
                says yes, cleared when a refund line of DOKU's report deducts it
    manual      the platform's bank paid it (a transfer with its reference): cleared at once
    deposit     DOKU's Refund Service pays it out of the platform's pre-funded deposit
                (``doku:refund_deposit``): succeeded when recorded (the deposit must cover it and
                DOKU takes IDR 10,000 - 25,000,000 a transaction [unconfirmed]), in flight until
                DOKU confirms paying it, then cleared
    chargeback  DOKU took the payment back for a dispute (a chargeback line of its report):
                succeeded and cleared by that line

What a refund takes from whom: proportional (default), explicit per-party amounts (``parties``),
or by line item (``line_items``: the items' seller share, commission and fee part exactly,
``split.line_item_parts``).

Rules:
* A refund reserves its amount on the order when requested (under the order's row lock), so two
  refunds racing each other can never together exceed what was captured (``check_refundable``).
* The reversal is computed when the refund succeeds, from the frozen allocation and the cumulative
  reversal so far (``split.reverse``), so any chain of partial refunds adds up to the full reversal.
* A seller's share comes out of pending before settlement and out of available after it; what the
  seller no longer has becomes debt (``bookings.split_seller_debit``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec

from ledger import bookings, chart, errors, split
from ledger.model import EntryDraft
from ledger.orders import Order

RefundMode = Literal["gateway", "manual", "deposit", "chargeback"]
RefundStatus = Literal["requested", "succeeded", "failed"]

# DOKU's Refund Service pays IDR 10,000 - 25,000,000 a transaction [unconfirmed, third-party].
DEPOSIT_REFUND_MIN = 10_000
DEPOSIT_REFUND_MAX = 25_000_000


class RefundLine(msgspec.Struct, frozen=True, kw_only=True):
    """Line items of the order coming back: ``index`` (0-based, in the order's ``line_items``) or
    ``name`` (unique in the order), and how many of them."""

    quantity: int
    index: int | None = None
    name: str | None = None


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
    line_items: dict[int, int] | None = None  # item index -> quantity, for a refund by line item
    cleared_at: datetime | None = None  # when its money finally left: deducted, paid, or at once
    cleared_by: str | None = None  # what cleared it: "report <id> line <n>", a reference, "bank"
    clearing_entry_id: int | None = None


def resolve_lines(items: Sequence[split.LineItem], wanted: Sequence[RefundLine]) -> dict[int, int]:
    """``{item index: quantity}`` for the lines a refund names; ``UnknownLineItem`` for a line that
    names no item (or two by one name), an item named twice, or a quantity below 1."""
    found: dict[int, int] = {}
    for position, line in enumerate(wanted):
        if (line.index is None) == (line.name is None):
            raise errors.UnknownLineItem(f"line_items[{position}]: give exactly one of index or name")
        if line.index is not None:
            if not 0 <= line.index < len(items):
                raise errors.UnknownLineItem(f"line_items[{position}]: the order has no item {line.index}")
            index = line.index
        else:
            named = [i for i, item in enumerate(items) if item.name == line.name]
            if len(named) != 1:
                what = "no item" if not named else f"{len(named)} items"
                raise errors.UnknownLineItem(f"line_items[{position}]: the order has {what} named {line.name!r}")
            index = named[0]
        if index in found:
            raise errors.UnknownLineItem(f"line_items[{position}]: item {index} is named twice")
        if line.quantity < 1:
            raise errors.UnknownLineItem(f"line_items[{position}]: quantity must be at least 1")
        found[index] = line.quantity
    if not found:
        raise errors.UnknownLineItem("name at least one line item")
    return found


def refunded_quantities(refunds: Iterable[Refund], *, statuses: Collection[str]) -> dict[int, int]:
    """Item index -> quantity refunded by the line-item refunds in ``statuses``."""
    total: dict[int, int] = {}
    for refund in refunds:
        if refund.status in statuses and refund.line_items:
            for index, quantity in refund.line_items.items():
                total[index] = total.get(index, 0) + quantity
    return total


def line_items_amount(items: Sequence[split.LineItem], lines: Mapping[int, int]) -> int:
    return sum(items[index].price * quantity for index, quantity in lines.items())


def check_line_items(items: Sequence[split.LineItem], lines: Mapping[int, int], reserved: Mapping[int, int]) -> None:
    """Raise ``LineItemQuantityExceeded`` when a line would come back more often than it was bought."""
    for index, quantity in sorted(lines.items()):
        left = items[index].quantity - reserved.get(index, 0)
        if quantity > left:
            raise errors.LineItemQuantityExceeded(
                f"item {index} ({items[index].name!r}) has {left} of {items[index].quantity} left to refund",
                index=index,
                requested=quantity,
                refundable=left,
            )


def line_item_explicit(
    order: Order, items: Sequence[split.LineItem], before: Mapping[int, int], lines: Mapping[int, int]
) -> dict[str, int]:
    """The per-party amounts of a refund of ``lines`` after the line-item refunds ``before``."""
    if not isinstance(order.policy.split, split.CartPolicy):
        raise errors.UnknownLineItem("only a cart order (every item has its seller) can be refunded by line item")
    return split.line_item_parts(order.allocation, items, before, lines, order.policy.refund)


def check_deposit(amount: int, available: int) -> None:
    """Raise unless DOKU's Refund Service can pay ``amount`` out of a deposit with ``available`` left."""
    if not DEPOSIT_REFUND_MIN <= amount <= DEPOSIT_REFUND_MAX:
        raise errors.DepositRefundOutOfRange(
            f"DOKU's Refund Service pays {DEPOSIT_REFUND_MIN:,} to {DEPOSIT_REFUND_MAX:,} IDR a refund",
            minimum=DEPOSIT_REFUND_MIN,
            maximum=DEPOSIT_REFUND_MAX,
        )
    if amount > available:
        raise errors.DepositInsufficient(
            f"the refund deposit has {available} available, the refund needs {amount}",
            available=available,
            requested=amount,
        )


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


def accounts_touched(reversal: split.Reversal, mode: str = "gateway") -> list[str]:
    """Every account a refund entry with this reversal can touch (to lock them before reading)."""
    sellers = sorted(s for s, amount in reversal.sellers.items() if amount)
    codes = sorted({chart.CLEARING, chart.BANK, chart.COMMISSION, chart.FEES_WITHHELD, bookings.exit_account(mode)})
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


class RefundDeposit(msgspec.Struct, frozen=True, kw_only=True):
    """The platform's deposit behind DOKU's Refund Service, now."""

    balance: int  # doku:refund_deposit: topped up, less the deposit refunds DOKU has paid
    in_flight: int  # deposit refunds DOKU has not confirmed paying yet
    recording: int  # deposit refunds being recorded (reserved, not booked yet)
    available: int  # what a new deposit refund may use: balance - in_flight - recording


def deposit_of(balance: int, in_flight: int, recording: int) -> RefundDeposit:
    return RefundDeposit(
        balance=balance, in_flight=in_flight, recording=recording, available=balance - in_flight - recording
    )


class TopUp(msgspec.Struct, frozen=True, kw_only=True):
    top_up_id: str
    amount: int
    reference: str
    entry_id: int
    deposit: RefundDeposit
