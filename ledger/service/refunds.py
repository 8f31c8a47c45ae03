"""Refunds: reserved (phase ``refund_reserved``), sent to DOKU, recorded as a manual transfer or as a
payment of DOKU's Refund Service out of the deposit, then booked exactly once.

Rules:
* The refund id is derived from the Idempotency-Key, and is DOKU's Request-Id: a retry after a crash
  finds the same refund and asks DOKU the same question, never a second one.
* DOKU's answer decides succeeded or failed; when DOKU cannot be reached the refund stays
  ``requested`` and can be retried (``send_refund``) with the same Request-Id.
* A refund by line item reverses the items' seller share, commission and fee part exactly
  (``split.line_item_parts``), computed when it is booked from the line-item refunds booked before.
* A deposit refund is recorded only if the deposit covers it (deposit - in flight - deposit refunds
  being recorded, read under the deposit's balance locks); it stays in flight until DOKU confirms
  paying it (``confirm_deposit_refund``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger import bookings, chart, errors, split
from ledger import events as ev
from ledger.orders import Order, order_items
from ledger.refunds import (
    Refund,
    RefundLine,
    RefundMode,
    accounts_touched,
    check_deposit,
    check_line_items,
    check_refundable,
    line_item_explicit,
    line_items_amount,
    refund_draft,
    refunded_quantities,
    resolve_lines,
)
from ledger.service.gateway import Delivered, Outcome, PaymentGateway, Refused, Unreachable
from ledger.service.idempotency import Keyed
from ledger.store.database import Database, UnitOfWork


class RefundDraft(msgspec.Struct, frozen=True, kw_only=True):
    """A refund as asked for: an amount (shared proportionally, or by ``parties``), or line items
    (their amount, when given too, must be the items' price)."""

    amount: int | None = None
    reason: str
    mode: RefundMode = "gateway"
    reference: str | None = None
    parties: dict[str, int] | None = None
    line_items: tuple[RefundLine, ...] | None = None


async def create_refund(
    db: Database, doku: PaymentGateway, keyed: Keyed, platform_id: str, invoice_number: str, draft: RefundDraft
) -> Refund:
    refund_id = keyed.derive("rf")

    await keyed.phase(
        "refund_reserved", lambda uow: reserve_refund(uow, platform_id, refund_id, invoice_number, draft), grouped=True
    )
    if draft.mode in ("manual", "deposit"):
        return await keyed.finish(lambda uow: complete_refund(uow, platform_id, refund_id), grouped=True)
    return await _send(db, doku, keyed, platform_id, refund_id)


async def reserve_refund(
    uow: UnitOfWork, platform_id: str, refund_id: str, invoice_number: str, draft: RefundDraft
) -> Refund:
    """Check and reserve a refund under the order's row lock; nothing is posted yet."""
    order = await uow.orders.get(platform_id, invoice_number, for_update=True)
    amount, explicit, lines = draft.amount, draft.parties, None
    if draft.line_items:
        amount, explicit, lines = await _by_line_items(uow, platform_id, order, draft)
    if amount is None:
        raise errors.AmountMismatch("a refund needs an amount or line items")
    check_refundable(order, amount, explicit)
    if draft.mode == "deposit":
        held = await uow.ledger.lock_balances(platform_id, [chart.REFUND_DEPOSIT, chart.DEPOSIT_IN_FLIGHT])
        recording = await uow.refunds.requested_total(platform_id, "deposit")
        available = held.get(chart.REFUND_DEPOSIT, 0) - held.get(chart.DEPOSIT_IN_FLIGHT, 0) - recording
        check_deposit(amount, available)
    refund = await uow.refunds.insert(
        platform_id,
        refund_id=refund_id,
        invoice_number=invoice_number,
        amount=amount,
        reason=draft.reason,
        mode=draft.mode,
        reference=draft.reference,
        explicit=draft.parties,
        line_items=lines,
    )
    await uow.orders.reserve_refund(platform_id, invoice_number, amount)
    uow.events.emit(platform_id, ev.refund_event(ev.REFUND_CREATED, refund))
    return refund


async def _by_line_items(
    uow: UnitOfWork, platform_id: str, order: Order, draft: RefundDraft
) -> tuple[int, dict[str, int], dict[int, int]]:
    """A refund by line item: its amount, its per-party amounts (as of now), and the items."""
    if draft.parties is not None:
        raise errors.UnknownLineItem("give line items or per-party amounts, not both")
    items = order_items(order)
    lines = resolve_lines(items, draft.line_items or ())
    earlier = await uow.refunds.of_order(platform_id, order.invoice_number)
    check_line_items(items, lines, refunded_quantities(earlier, statuses=("requested", "succeeded")))
    amount = line_items_amount(items, lines)
    if draft.amount is not None and draft.amount != amount:
        raise errors.AmountMismatch(
            f"the line items come to {amount}, not {draft.amount}", expected=amount, actual=draft.amount
        )
    booked = refunded_quantities(earlier, statuses=("succeeded",))
    return amount, line_item_explicit(order, items, booked, lines), lines


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
    explicit = refund.explicit
    if refund.line_items:
        # From the line-item refunds booked before this one, so a chain ends exactly at the items' budget.
        others = [r for r in await uow.refunds.of_order(platform_id, order.invoice_number) if r.refund_id != refund_id]
        booked = refunded_quantities(others, statuses=("succeeded",))
        explicit = line_item_explicit(order, order_items(order), booked, refund.line_items)
    reversal = split.reverse(order.allocation, order.reversed, refund.amount, order.policy.refund, explicit=explicit)
    # Lock every account the entry can touch before reading the balances it is split by.
    balance = await uow.ledger.lock_balances(platform_id, accounts_touched(reversal, refund.mode))
    posted = await uow.ledger.post_one(platform_id, refund_draft(order, refund, reversal, balance))
    cumulative = split.sum_reversals([r for r in (order.reversed, reversal) if r is not None])
    await uow.orders.record_reversal(platform_id, order.invoice_number, cumulative, refund.amount)
    cleared_by = f"bank {reference or refund.reference or ''}".strip() if refund.mode == "manual" else None
    refund = await uow.refunds.succeed(
        platform_id, refund_id, reversal, posted.entry_id, reference, cleared_by=cleared_by
    )
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


async def confirm_deposit_refund(
    db: Database, keyed: Keyed, platform_id: str, refund_id: str, *, reference: str | None = None
) -> Refund:
    """DOKU's Refund Service paid a deposit refund: out of the deposit, no longer in flight."""

    async def confirm(uow: UnitOfWork) -> Refund:
        refund = await uow.refunds.get(platform_id, refund_id)
        await uow.orders.get(platform_id, refund.invoice_number, for_update=True)
        refund = await uow.refunds.get(platform_id, refund_id, for_update=True)
        if refund.mode == "deposit" and refund.cleared_at is not None:
            return refund  # confirmed before: the same answer
        if refund.mode != "deposit" or refund.status != "succeeded":
            raise errors.RefundNotInFlight(
                f"refund {refund_id!r} is a {refund.status} {refund.mode} refund", mode=refund.mode
            )
        await uow.ledger.lock_balances(platform_id, [chart.REFUND_DEPOSIT, chart.DEPOSIT_IN_FLIGHT])
        draft = bookings.deposit_paid_entry(refund.invoice_number, refund_id, refund.amount, reference)
        posted = await uow.ledger.post_one(platform_id, draft)
        return await uow.refunds.clear(
            platform_id, refund_id, entry_id=posted.entry_id, cleared_by=reference or "refund_service"
        )

    return await keyed.finish(confirm, grouped=True)


async def list_refunds(db: Database, platform_id: str, invoice_number: str) -> list[Refund]:
    async def read(uow: UnitOfWork) -> list[Refund]:
        await uow.orders.get(platform_id, invoice_number)
        return await uow.refunds.of_order(platform_id, invoice_number)

    return await db.read(read)


async def get_refund(db: Database, platform_id: str, refund_id: str) -> Refund:
    return await db.read(lambda uow: uow.refunds.get(platform_id, refund_id))
