"""Orders: the frozen allocation, the order's life, and which captures to book (pure).

Rules:
* The allocation is computed and frozen when the order is created; capture, refunds and
  settlement only ever read it.
* Capture is decided here, set-based (``plan_captures``): an unknown invoice, an amount that
  differs from the order, or an order already captured (or claimed earlier in the same batch) is
  never posted; each of the rest gets one capture entry with the key ``capture:<invoice>``, so a
  second capture of the same order is a no-op whatever its source.
* The order's states and the moves between them are docs/order-states.md. DOKU's word never moves
  money against the order's state: a SUCCESS for an order that failed or expired is a
  ``conflict`` (never posted), as is a FAILED or EXPIRED for a captured order (``is_contradiction``);
  each becomes a ``status_conflict`` exception with the evidence, a status check asks DOKU, and
  an operator resolves it (capturing the order, when DOKU did take the money).
* A capture whose amount differs from the order becomes a reconciliation exception (the caller's).
* An invoice number is addressable (``INVOICE_NUMBER``): one URL path segment as it stands, here
  and in DOKU's status check. Slashes, ``.``/``..``, spaces, ``%``, ``?`` or ``#`` could never be
  read, re-sent or refunded later, so such an order is refused when it is created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec

from ledger import bookings
from ledger import split as splitting
from ledger.model import EntryDraft
from ledger.split import FeePolicy, RefundPolicy, SplitPolicy

INVOICE_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
INVOICE_NUMBER_RULE = "1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"


def is_addressable_invoice_number(invoice_number: str) -> bool:
    return INVOICE_NUMBER.fullmatch(invoice_number) is not None


OrderStatus = Literal["created", "send_failed", "pending", "captured", "failed", "expired"]
OPEN_STATUSES: tuple[OrderStatus, ...] = ("created", "send_failed", "pending")
CLOSED_STATUSES: tuple[OrderStatus, ...] = ("failed", "expired")
STATUS_CONFLICT = "status_conflict"  # the reconciliation exception kind of a contradicting word from DOKU


class OrderPolicy(msgspec.Struct, frozen=True, kw_only=True):
    split: SplitPolicy
    fee: FeePolicy
    refund: RefundPolicy = RefundPolicy()
    basis: Literal["gross", "net"] = "gross"


class Order(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    amount: int
    status: OrderStatus
    request: dict[str, Any]
    policy: OrderPolicy
    allocation: splitting.Allocation
    reversed: splitting.Reversal | None
    refunded_amount: int
    refund_reserved: int
    doku_request_id: str
    doku_error: dict[str, Any] | None
    capture_entry_id: int | None
    captured_at: datetime | None
    settled_at: datetime | None
    settlement_entry_id: int | None
    closed_reason: str | None
    created_at: datetime
    updated_at: datetime


def order_items(order: Order) -> tuple[splitting.LineItem, ...]:
    """The order's line items as the platform sent them (kept in its request document)."""
    found = order.request.get("line_items") or ()
    return tuple(
        splitting.LineItem(
            name=str(item.get("name", "")),
            price=int(item["price"]),
            quantity=int(item["quantity"]),
            seller_id=item.get("seller_id"),
        )
        for item in found
        if isinstance(item, dict)
    )


def refund_status(order: Order) -> Literal["none", "partially_refunded", "refunded"]:
    """The order's refund state, derived from its succeeded refunds (docs/order-states.md)."""
    if order.refunded_amount == 0:
        return "none"
    return "refunded" if order.refunded_amount == order.amount else "partially_refunded"


class CartSplit(msgspec.Struct, frozen=True, kw_only=True, tag="cart"):
    commission_bps: int | None = None  # overrides the platform's and the sellers' rates for this order
    fixed_fee: int = 0


class ExplicitSplit(msgspec.Struct, frozen=True, kw_only=True, tag="explicit"):
    shares: tuple[splitting.Share, ...]
    remainder_to: str = splitting.PLATFORM


class OrderDraft(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the platform asked for it, before its allocation is frozen."""

    invoice_number: str
    amount: int
    line_items: tuple[splitting.LineItem, ...]
    customer: dict[str, str | None]
    redirect_url: str
    cash_tag: str
    split: CartSplit | ExplicitSplit = CartSplit()
    fee_bearer: Literal["platform", "sellers"] | None = None
    basis: Literal["gross", "net"] = "gross"
    refund_commission: bool = True
    request: dict[str, Any] = {}  # the request as received, kept with the order


def named_sellers(draft: OrderDraft) -> list[str]:
    """Every seller the order names (each must exist)."""
    named = {i.seller_id for i in draft.line_items if i.seller_id}
    if isinstance(draft.split, ExplicitSplit):
        named |= {s.party for s in draft.split.shares if s.party != splitting.PLATFORM}
        if draft.split.remainder_to != splitting.PLATFORM:
            named.add(draft.split.remainder_to)
    return sorted(named)


def freeze_policy(
    draft: OrderDraft,
    *,
    commission_bps: int,
    seller_commission_bps: Mapping[str, int],
    fee: splitting.FeePolicy,
) -> OrderPolicy:
    """The policies the order keeps for life, from the platform's defaults and the order's own choices."""
    policy: SplitPolicy
    if isinstance(draft.split, CartSplit):
        policy = splitting.CartPolicy(
            commission_bps=commission_bps,
            seller_commission_bps=dict(seller_commission_bps),
            order_commission_bps=draft.split.commission_bps,
            fixed_fee=draft.split.fixed_fee,
        )
    else:
        policy = splitting.ExplicitPolicy(shares=draft.split.shares, remainder_to=draft.split.remainder_to)
    return OrderPolicy(
        split=policy,
        fee=msgspec.structs.replace(fee, bearer=draft.fee_bearer or fee.bearer),
        refund=splitting.RefundPolicy(refund_commission=draft.refund_commission),
        basis=draft.basis,
    )


class CaptureRequest(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    amount: int
    at: datetime | None = None
    source: str = "notification"


CaptureOutcome = Literal["captured", "duplicate", "amount_mismatch", "unknown_invoice", "conflict"]


class CaptureResult(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    outcome: CaptureOutcome
    entry_id: int | None = None
    expected: int | None = None


class Capturable(msgspec.Struct, frozen=True, kw_only=True):
    """What capture needs of an order."""

    amount: int
    status: str
    capture_entry_id: int | None
    allocation: splitting.Allocation
    closed_reason: str | None = None  # why a failed or expired order closed (a contradiction's evidence)


class CapturePlan(msgspec.Struct, frozen=True, kw_only=True):
    """``decided`` answers requests that post nothing; ``to_post`` is (request index, entry) per capture."""

    decided: dict[int, CaptureResult]
    to_post: tuple[tuple[int, CaptureRequest, EntryDraft], ...]


def is_contradiction(order_status: str, doku_status: str) -> bool:
    """Whether DOKU's status contradicts the order's: a payment that failed or expired succeeding
    after all, or a captured payment failing or expiring (TIMEOUT counts as EXPIRED)."""
    doku_status = doku_status.upper()
    if order_status in CLOSED_STATUSES:
        return doku_status == "SUCCESS"
    return order_status == "captured" and doku_status in ("FAILED", "EXPIRED", "TIMEOUT")


def conflict_evidence(
    order_status: str, closed_reason: str | None, *, doku_status: str, amount: int, date: str | None, source: str
) -> dict[str, Any]:
    """What a contradicting word from DOKU said, and what the order was when it came."""
    return {
        "doku_status": doku_status.upper(),
        "amount": amount,
        "date": date,
        "source": source,
        "order_status": order_status,
        "closed_reason": closed_reason,
    }


def plan_captures(
    requests: Sequence[CaptureRequest], orders: Mapping[str, Capturable], *, reopen: bool = False
) -> CapturePlan:
    """Which captures to post. An order that failed or expired is a ``conflict`` unless ``reopen``
    (an operator resolving the conflict: DOKU did take the money)."""
    decided: dict[int, CaptureResult] = {}
    to_post: list[tuple[int, CaptureRequest, EntryDraft]] = []
    claimed: set[str] = set()
    for index, req in enumerate(requests):
        order = orders.get(req.invoice_number)
        if order is None:
            decided[index] = CaptureResult(invoice_number=req.invoice_number, outcome="unknown_invoice")
        elif req.amount != order.amount:
            decided[index] = CaptureResult(
                invoice_number=req.invoice_number, outcome="amount_mismatch", expected=order.amount
            )
        elif order.status == "captured" or req.invoice_number in claimed:
            decided[index] = CaptureResult(
                invoice_number=req.invoice_number, outcome="duplicate", entry_id=order.capture_entry_id
            )
        elif order.status in CLOSED_STATUSES and not reopen:
            decided[index] = CaptureResult(invoice_number=req.invoice_number, outcome="conflict")
        else:
            claimed.add(req.invoice_number)
            allocation = order.allocation
            draft = bookings.capture_entry(
                req.invoice_number,
                gross=allocation.gross,
                fee=allocation.fee,
                platform=allocation.platform,
                sellers={s.seller_id: s.net for s in allocation.sellers},
                at=req.at,
            )
            to_post.append((index, req, draft))
    return CapturePlan(decided=decided, to_post=tuple(to_post))


PaymentAction = Literal["capture", "fail", "expire", "ignore"]


def payment_action(status: str) -> PaymentAction:
    """What DOKU's transaction status means for an order (case-insensitive)."""
    match status.upper():
        case "SUCCESS":
            return "capture"
        case "FAILED":
            return "fail"
        case "EXPIRED" | "TIMEOUT":
            return "expire"
        case _:
            return "ignore"


def in_arrival_rounds(words: Sequence[tuple[str, PaymentAction]]) -> list[list[int]]:
    """Split a batch of ``(invoice, action)`` into consecutive rounds, in arrival order, so that no
    invoice is both captured and closed (failed or expired) within one round.

    A round's captures and closes can then be applied set-based in any order and still end where
    applying every word one after the other would: a SUCCESS after an EXPIRED, or an EXPIRED after
    a SUCCESS, is a ``conflict`` (``is_contradiction``) against the state the word before it left.
    Nearly every batch is one round.
    """
    rounds: list[list[int]] = []
    kinds: dict[str, str] = {}  # invoice -> "capture" or "close", within the current round
    for index, (invoice, action) in enumerate(words):
        kind = None if action == "ignore" else "capture" if action == "capture" else "close"
        if not rounds or (kind is not None and kinds.get(invoice, kind) != kind):
            rounds.append([])
            kinds = {}
        if kind is not None:
            kinds[invoice] = kind
        rounds[-1].append(index)
    return rounds
