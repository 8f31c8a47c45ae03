"""The resources as the API shows them: the answer of each endpoint, and the ``data`` of each event.

Rule: one conversion per resource, pure (no I/O, no clock). The HTTP answers (``api.schemas``
re-exports these) and the events written in the same transaction as a change
(``ledger.events``) are made by the same functions, so an event's ``data`` is byte for byte
the resource a client would have read from the API at that moment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ledger.orders import Order, refund_status
from ledger.refunds import Refund
from ledger.settlement import ImportSummary


class SellerShareOut(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    subtotal: int
    commission: int
    fee_share: int
    net: int


class AllocationOut(msgspec.Struct, frozen=True, kw_only=True):
    gross: int
    doku_fee: int
    fee_bearer: str
    basis: str
    platform: int
    sellers: list[SellerShareOut]


class OrderOut(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    amount: int
    status: str  # the payment's state: created, send_failed, pending, captured, failed, expired
    refund_status: str  # none, partially_refunded, refunded (docs/order-states.md)
    allocation: AllocationOut
    refunded_amount: int
    refundable_amount: int
    captured_at: datetime | None
    settled_at: datetime | None
    doku_request_id: str
    doku_error: dict[str, Any] | None
    closed_reason: str | None
    created_at: datetime
    updated_at: datetime
    links: dict[str, str]


class RefundOut(msgspec.Struct, frozen=True, kw_only=True):
    refund_id: str
    invoice_number: str
    amount: int
    reason: str
    mode: str
    reference: str | None
    status: str
    reversal: dict[str, int] | None
    entry_id: int | None
    failure: dict[str, Any] | None
    created_at: datetime
    completed_at: datetime | None
    line_items: list[dict[str, int]] | None  # [{"index", "quantity"}] of a refund by line item
    cleared_at: datetime | None  # when its money finally left: DOKU deducted it, its Refund Service paid it
    cleared_by: str | None


class ImportOut(ImportSummary, frozen=True, kw_only=True):
    """A settlement report's import summary with its exceptions counted."""

    exception_count: int


def order_out(order: Order) -> OrderOut:
    allocation = order.allocation
    return OrderOut(
        invoice_number=order.invoice_number,
        amount=order.amount,
        status=order.status,
        refund_status=refund_status(order),
        allocation=AllocationOut(
            gross=allocation.gross,
            doku_fee=allocation.fee,
            fee_bearer=allocation.fee_bearer,
            basis=allocation.basis,
            platform=allocation.platform,
            sellers=[
                SellerShareOut(
                    seller_id=s.seller_id,
                    subtotal=s.subtotal,
                    commission=s.commission,
                    fee_share=s.fee_share,
                    net=s.net,
                )
                for s in allocation.sellers
            ],
        ),
        refunded_amount=order.refunded_amount,
        refundable_amount=order.amount - order.refund_reserved if order.status == "captured" else 0,
        captured_at=order.captured_at,
        settled_at=order.settled_at,
        doku_request_id=order.doku_request_id,
        doku_error=order.doku_error,
        closed_reason=order.closed_reason,
        created_at=order.created_at,
        updated_at=order.updated_at,
        links={
            "self": f"/v1/orders/{order.invoice_number}",
            "refunds": f"/v1/orders/{order.invoice_number}/refunds",
            "capture_entry": f"/v1/ledger/entries/{order.capture_entry_id}" if order.capture_entry_id else "",
        },
    )


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut(
        refund_id=refund.refund_id,
        invoice_number=refund.invoice_number,
        amount=refund.amount,
        reason=refund.reason,
        mode=refund.mode,
        reference=refund.reference,
        status=refund.status,
        reversal=refund.reversal.parts() if refund.reversal is not None else None,
        entry_id=refund.entry_id,
        failure=refund.failure,
        created_at=refund.created_at,
        completed_at=refund.completed_at,
        line_items=[{"index": i, "quantity": q} for i, q in sorted(refund.line_items.items())]
        if refund.line_items
        else None,
        cleared_at=refund.cleared_at,
        cleared_by=refund.cleared_by,
    )


def import_out(summary: ImportSummary) -> ImportOut:
    return ImportOut(**msgspec.structs.asdict(summary), exception_count=sum(summary.exceptions.values()))
