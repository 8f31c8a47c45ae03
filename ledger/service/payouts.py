"""Payouts: request (available → in transit), then confirmed (→ bank) or failed (→ back to available).

Each is one unit of work together with its Idempotency-Key's answer, group-committed with the
platform's other refunds and payouts (they lock the same seller and platform accounts); the payout
id is derived from the key, so a retry after a crash finds the payout the first attempt made.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec

from ledger import bookings, errors
from ledger import events as ev
from ledger.model import EntryDraft
from ledger.payouts import Payout, PayoutStatus, accounts_touched, check_payable, check_transition, same_payout
from ledger.service.idempotency import Keyed
from ledger.store.database import Database, UnitOfWork


class PayoutDraft(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    amount: int
    reference: str | None = None
    mark_paid: bool = False


async def create_payout(db: Database, keyed: Keyed, platform_id: str, draft: PayoutDraft) -> Payout:
    payout_id = keyed.derive("po")
    return await keyed.finish(lambda uow: request_payout(uow, platform_id, payout_id, draft), grouped=True)


async def request_payout(uow: UnitOfWork, platform_id: str, payout_id: str, draft: PayoutDraft) -> Payout:
    """Request a payout of ``draft.amount`` to a seller (already paid with ``mark_paid``)."""
    seller_id, amount = draft.seller_id, draft.amount
    await uow.sellers.get(platform_id, seller_id)
    codes = accounts_touched(seller_id, with_bank=draft.mark_paid)
    balance = await uow.ledger.lock_balances(platform_id, codes)
    missing = [code for code in codes if code not in balance]
    if missing:
        raise errors.UnknownAccount(f"no account {missing[0]!r}", account=missing[0])
    # Checked after the lock: a concurrent request with the same id has committed by now.
    existing = await uow.payouts.find(platform_id, payout_id)
    if existing is not None:
        return same_payout(existing, seller_id, amount)
    check_payable(seller_id, amount, balance)
    drafts = [bookings.payout_request_entry(payout_id, seller_id, amount)]
    if draft.mark_paid:
        drafts.append(bookings.payout_paid_entry(payout_id, seller_id, amount))
    posted = [await uow.ledger.post_one(platform_id, d) for d in drafts]
    payout = await uow.payouts.insert(
        platform_id,
        payout_id=payout_id,
        seller_id=seller_id,
        amount=amount,
        status="paid" if draft.mark_paid else "pending",
        reference=draft.reference,
        request_entry_id=posted[0].entry_id,
        completion_entry_id=posted[1].entry_id if draft.mark_paid else None,
    )
    uow.events.emit_all(platform_id, ev.payout_events(payout, created=True))
    return payout


async def confirm_payout(
    db: Database, keyed: Keyed, platform_id: str, payout_id: str, *, reference: str | None = None
) -> Payout:
    """The bank paid it: in transit → bank. A paid payout is returned unchanged."""
    return await keyed.finish(
        lambda uow: _move(uow, platform_id, payout_id, "paid", bookings.payout_paid_entry, reference=reference),
        grouped=True,
    )


async def fail_payout(db: Database, keyed: Keyed, platform_id: str, payout_id: str, *, reason: str) -> Payout:
    """The bank refused it: the money goes back to available. A failed payout is returned unchanged."""
    return await keyed.finish(
        lambda uow: _move(uow, platform_id, payout_id, "failed", bookings.payout_failed_entry, reason=reason),
        grouped=True,
    )


async def _move(
    uow: UnitOfWork,
    platform_id: str,
    payout_id: str,
    status: PayoutStatus,
    entry_for: Callable[[str, str, int], EntryDraft],
    *,
    reference: str | None = None,
    reason: str | None = None,
) -> Payout:
    payout = await uow.payouts.get(platform_id, payout_id, for_update=True)
    if not check_transition(payout, status):
        return payout
    posted = await uow.ledger.post_one(platform_id, entry_for(payout_id, payout.seller_id, payout.amount))
    payout = await uow.payouts.complete(
        platform_id, payout_id, status, posted.entry_id, reference=reference, reason=reason
    )
    uow.events.emit_all(platform_id, ev.payout_events(payout, created=False))
    return payout


async def get_payout(db: Database, platform_id: str, payout_id: str) -> Payout:
    return await db.read(lambda uow: uow.payouts.get(platform_id, payout_id))


async def list_payouts(
    db: Database,
    platform_id: str,
    *,
    seller_id: str | None = None,
    status: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[Payout]:
    return await db.read(
        lambda uow: uow.payouts.page(platform_id, seller_id=seller_id, status=status, after=after, limit=limit)
    )
