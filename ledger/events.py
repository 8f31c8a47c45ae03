"""Platform events (pure): what happened to a platform's resources, as integrators receive it.

Rules:
* An event is ``{"id", "type", "created_at", "platform_id", "data"}``; ``data`` is the resource as
  the API shows it (``ledger.views``), its id included. The event's bytes are encoded once, when
  it is written, and served unchanged by the feed and by every webhook delivery (so a signature
  is over exactly what the feed shows).
* Events are written in the transaction of the change they describe (``uow.events.emit``, the
  outbox in ``ledger.store.events``): no change commits without its event, no event survives a
  rollback.
* Each event belongs to a *chain*: the resource whose history it tells (an order and its refunds,
  a payout, an exception, a settlement report, a webhook endpoint). Deliveries of one chain reach
  each endpoint in the order the events happened.
* The feed's cursor is a position in the platform's stream (assigned at commit, in commit order,
  without holes); it is opaque to clients.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from ledger import errors
from ledger.orders import Order
from ledger.payouts import Payout
from ledger.refunds import Refund
from ledger.settlement import ImportSummary
from ledger.views import import_out, order_out, refund_out

ORDER_CREATED = "order.created"
ORDER_CAPTURED = "order.captured"
ORDER_FAILED = "order.failed"
ORDER_EXPIRED = "order.expired"
REFUND_CREATED = "refund.created"
REFUND_SUCCEEDED = "refund.succeeded"
REFUND_FAILED = "refund.failed"
SETTLEMENT_IMPORTED = "settlement.imported"
PAYOUT_CREATED = "payout.created"
PAYOUT_PAID = "payout.paid"
PAYOUT_FAILED = "payout.failed"
EXCEPTION_OPENED = "reconciliation.exception_opened"
EXCEPTION_RESOLVED = "reconciliation.exception_resolved"
ENDPOINT_DISABLED = "webhook_endpoint.disabled"

EVENT_TYPES: tuple[str, ...] = (
    ORDER_CREATED,
    ORDER_CAPTURED,
    ORDER_FAILED,
    ORDER_EXPIRED,
    REFUND_CREATED,
    REFUND_SUCCEEDED,
    REFUND_FAILED,
    SETTLEMENT_IMPORTED,
    PAYOUT_CREATED,
    PAYOUT_PAID,
    PAYOUT_FAILED,
    EXCEPTION_OPENED,
    EXCEPTION_RESOLVED,
    ENDPOINT_DISABLED,
)
ALL = "*"  # an endpoint subscribed to every type
CLOSED_ORDER_EVENTS = {"failed": ORDER_FAILED, "expired": ORDER_EXPIRED}


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event about to be written: its type, its data (a view Struct) and its chain."""

    type: str
    data: Any
    chain: str


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """The wire shape (field order is the order integrators read)."""

    id: str
    type: str
    created_at: datetime
    platform_id: str
    data: Any


_encode = msgspec.json.Encoder().encode


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


def encode_event(event_id: str, platform_id: str, created_at: datetime, new: NewEvent) -> bytes:
    """The event's bytes, encoded once (``created_at`` is RFC 3339, UTC)."""
    return _encode(Event(id=event_id, type=new.type, created_at=created_at, platform_id=platform_id, data=new.data))


def order_event(type_: str, order: Order) -> NewEvent:
    return NewEvent(type=type_, data=order_out(order), chain=f"order:{order.invoice_number}")


def closed_order_event(order: Order | None) -> list[NewEvent]:
    """``order.failed`` / ``order.expired`` for an order a status change just closed (none otherwise)."""
    if order is None or order.status not in CLOSED_ORDER_EVENTS:
        return []
    return [order_event(CLOSED_ORDER_EVENTS[order.status], order)]


def refund_event(type_: str, refund: Refund) -> NewEvent:
    # A refund is part of its order's history: refund.created comes after order.captured.
    return NewEvent(type=type_, data=refund_out(refund), chain=f"order:{refund.invoice_number}")


def payout_event(type_: str, payout: Payout) -> NewEvent:
    return NewEvent(type=type_, data=payout, chain=f"payout:{payout.payout_id}")


def payout_events(payout: Payout, *, created: bool) -> list[NewEvent]:
    """The events of a payout that was just created (``created``) or just completed."""
    found = [payout_event(PAYOUT_CREATED, payout)] if created else []
    if payout.status in ("paid", "failed"):
        found.append(payout_event(f"payout.{payout.status}", payout))
    return found


def exception_event(type_: str, exception_id: int, data: Any) -> NewEvent:
    return NewEvent(type=type_, data=data, chain=f"exception:{exception_id}")


def settlement_event(summary: ImportSummary) -> NewEvent:
    return NewEvent(type=SETTLEMENT_IMPORTED, data=import_out(summary), chain=f"settlement:{summary.report_id}")


def endpoint_event(type_: str, endpoint_id: str, data: Any) -> NewEvent:
    return NewEvent(type=type_, data=data, chain=f"webhook_endpoint:{endpoint_id}")


def check_subscription(types: Iterable[str]) -> tuple[str, ...]:
    """The event types an endpoint asks for: known types (deduplicated, in order) or exactly ``["*"]``."""
    wanted = list(dict.fromkeys(types))
    if not wanted:
        raise errors.UnknownEventType('subscribe to at least one event type, or to ["*"]', types=[])
    if ALL in wanted:
        if len(wanted) > 1:
            raise errors.UnknownEventType('"*" already means every type: send it alone', types=wanted)
        return (ALL,)
    unknown = [t for t in wanted if t not in EVENT_TYPES]
    if unknown:
        raise errors.UnknownEventType(f"unknown event type(s): {', '.join(unknown)}", types=unknown)
    return tuple(wanted)


def check_type(type_: str) -> str:
    """A feed filter names one known type."""
    if type_ not in EVENT_TYPES:
        raise errors.UnknownEventType(f"unknown event type {type_!r}", types=[type_])
    return type_


def is_subscribed(subscription: Iterable[str], type_: str) -> bool:
    wanted = set(subscription)
    return ALL in wanted or type_ in wanted


def encode_cursor(position: int) -> str:
    """A cursor after ``position`` (0: the start of the feed)."""
    return str(position)


def decode_cursor(cursor: str) -> int:
    """``ValueError`` for anything that is not a cursor this API handed out."""
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 19:
        raise ValueError("bad cursor")
    return int(cursor)
