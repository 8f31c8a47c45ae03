"""Refunds: reserved (phase ``refund_reserved``), sent to DOKU or recorded as a manual transfer, then
booked exactly once.

Rules:
* The refund id is derived from the Idempotency-Key, and is DOKU's Request-Id: a retry after a crash
  finds the same refund and asks DOKU the same question, never a second one.
* DOKU's answer decides succeeded or failed; when DOKU cannot be reached the refund stays
  ``requested`` and can be retried (``send_refund``) with the same Request-Id.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger import events as ev
from ledger import split
from ledger.refunds import Refund, RefundMode, accounts_touched, check_refundable, refund_draft
from ledger.service.gateway import Delivered, Outcome, PaymentGateway, Refused, Unreachable
from ledger.service.idempotency import Keyed
from ledger.store.database import Database, UnitOfWork


class RefundDraft(msgspec.Struct, frozen=True, kw_only=True):
    amount: int
    reason: str
    mode: RefundMode = "gateway"
    reference: str | None = None
    parties: dict[str, int] | None = None


async def create_refund(
    db: Database, doku: PaymentGateway, keyed: Keyed, platform_id: str, invoice_number: str, draft: RefundDraft
) -> Refund:
    refund_id = keyed.derive("rf")

    await keyed.phase(
        "refund_reserved", lambda uow: reserve_refund(uow, platform_id, refund_id, invoice_number, draft), grouped=True
    )
    if draft.mode == "manual":
        return await keyed.finish(lambda uow: complete_refund(uow, platform_id, refund_id), grouped=True)
    return await _send(db, doku, keyed, platform_id, refund_id)


async def reserve_refund(
    uow: UnitOfWork, platform_id: str, refund_id: str, invoice_number: str, draft: RefundDraft
) -> Refund:
    """Check and reserve a refund under the order's row lock; nothing is posted yet."""
    order = await uow.orders.get(platform_id, invoice_number, for_update=True)
    check_refundable(order, draft.amount, draft.parties)
    refund = await uow.refunds.insert(
        platform_id,
        refund_id=refund_id,
        invoice_number=invoice_number,
        amount=draft.amount,
        reason=draft.reason,
        mode=draft.mode,
        reference=draft.reference,
        explicit=draft.parties,
    )
    await uow.orders.reserve_refund(platform_id, invoice_number, draft.amount)
    uow.events.emit(platform_id, ev.refund_event(ev.REFUND_CREATED, refund))
    return refund


async def send_refund(db: Database, doku: PaymentGateway, keyed: Keyed, platform_id: str, refund_id: str) -> Refund:
    """Ask DOKU again about a refund left ``requested`` (same Request-Id) and book the answer."""
    await keyed.check()
    return await _send(db, doku, keyed, platform_id, refund_id)


async def _send(db: Database, doku: PaymentGateway, keyed: Keyed, platform_id: str, refund_id: str) -> Refund:
    async def read(uow: UnitOfWork) -> tuple[Refund, Any]:
        return await uow.refunds.get(platform_id, refund_id), await uow.gateways.get(platform_id)

    refund, gateway = await db.read(read)
    if refund.status != "requested" or refund.mode != "gateway":
        return await keyed.finish(lambda uow: uow.refunds.get(platform_id, refund_id))
    outcome = await doku.refund(gateway, refund)
    keyed.checkpoint("gateway:after_call")
    return await keyed.finish(lambda uow: _record(uow, platform_id, refund_id, outcome), grouped=True)


async def _record(uow: UnitOfWork, platform_id: str, refund_id: str, outcome: Outcome) -> Refund:
    match outcome:
        case Delivered():
            return await complete_refund(uow, platform_id, refund_id)
        case Refused(code=code, detail=detail, gateway_code=gateway_code):
            return await fail_refund(
                uow, platform_id, refund_id, {"code": code, "doku_code": gateway_code, "detail": detail}
            )
        case Unreachable():
            return await uow.refunds.get(platform_id, refund_id)


async def complete_refund(uow: UnitOfWork, platform_id: str, refund_id: str, *, reference: str | None = None) -> Refund:
    """Post the reversal of a requested refund (exactly once) and mark it succeeded."""
    refund = await uow.refunds.get(platform_id, refund_id)
    order = await uow.orders.get(platform_id, refund.invoice_number, for_update=True)
    refund = await uow.refunds.get(platform_id, refund_id, for_update=True)
    if refund.status != "requested":
        return refund
    reversal = split.reverse(
        order.allocation, order.reversed, refund.amount, order.policy.refund, explicit=refund.explicit
    )
    # Lock every account the entry can touch before reading the balances it is split by.
    balance = await uow.ledger.lock_balances(platform_id, accounts_touched(reversal))
    posted = await uow.ledger.post_one(platform_id, refund_draft(order, refund, reversal, balance))
    cumulative = split.sum_reversals([r for r in (order.reversed, reversal) if r is not None])
    await uow.orders.record_reversal(platform_id, order.invoice_number, cumulative, refund.amount)
    refund = await uow.refunds.succeed(platform_id, refund_id, reversal, posted.entry_id, reference)
    uow.events.emit(platform_id, ev.refund_event(ev.REFUND_SUCCEEDED, refund))
    return refund


async def fail_refund(uow: UnitOfWork, platform_id: str, refund_id: str, failure: dict[str, Any]) -> Refund:
    """Mark a requested refund failed and release its reservation; nothing was posted."""
    refund = await uow.refunds.get(platform_id, refund_id)
    await uow.orders.get(platform_id, refund.invoice_number, for_update=True)
    refund = await uow.refunds.get(platform_id, refund_id, for_update=True)
    if refund.status != "requested":
        return refund
    await uow.orders.reserve_refund(platform_id, refund.invoice_number, -refund.amount)
    refund = await uow.refunds.fail(platform_id, refund_id, failure)
    uow.events.emit(platform_id, ev.refund_event(ev.REFUND_FAILED, refund))
    return refund


async def list_refunds(db: Database, platform_id: str, invoice_number: str) -> list[Refund]:
    async def read(uow: UnitOfWork) -> list[Refund]:
        await uow.orders.get(platform_id, invoice_number)
        return await uow.refunds.of_order(platform_id, invoice_number)

    return await db.read(read)


async def get_refund(db: Database, platform_id: str, refund_id: str) -> Refund:
    return await db.read(lambda uow: uow.refunds.get(platform_id, refund_id))
