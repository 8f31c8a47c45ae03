"""The deposit behind DOKU's Refund Service: topped up by the platform from its bank, drawn by
deposit refunds (``ledger.service.refunds``, mode "deposit"), shown in the reconciliation.

Rule: a top-up is one journal entry (``deposit:<top_up_id>``, the id derived from the
Idempotency-Key) committed with the key's answer. A deposit refund checks what is available
under the deposit's balance locks (``ledger.service.refunds.reserve_refund``).
"""

from __future__ import annotations

import msgspec

from ledger import bookings, chart
from ledger.refunds import RefundDeposit, TopUp, deposit_of
from ledger.service.idempotency import Keyed
from ledger.store.database import Database, UnitOfWork


class TopUpDraft(msgspec.Struct, frozen=True, kw_only=True):
    amount: int
    reference: str  # the bank transfer that funded the deposit


async def _deposit(uow: UnitOfWork, platform_id: str) -> RefundDeposit:
    held = await uow.ledger.balances(platform_id, [chart.REFUND_DEPOSIT, chart.DEPOSIT_IN_FLIGHT])
    recording = await uow.refunds.requested_total(platform_id, "deposit")
    return deposit_of(held.get(chart.REFUND_DEPOSIT, 0), held.get(chart.DEPOSIT_IN_FLIGHT, 0), recording)


async def top_up_deposit(db: Database, keyed: Keyed, platform_id: str, draft: TopUpDraft) -> TopUp:
    top_up_id = keyed.derive("tu")

    async def top_up(uow: UnitOfWork) -> TopUp:
        await uow.ledger.lock_balances(platform_id, [chart.REFUND_DEPOSIT, chart.BANK])
        entry = bookings.deposit_top_up_entry(top_up_id, draft.amount, draft.reference)
        posted = await uow.ledger.post_one(platform_id, entry)
        deposit = await _deposit(uow, platform_id)
        return TopUp(
            top_up_id=top_up_id,
            amount=draft.amount,
            reference=draft.reference,
            entry_id=posted.entry_id,
            deposit=deposit,
        )

    return await keyed.finish(top_up, grouped=True)


async def get_deposit(db: Database, platform_id: str) -> RefundDeposit:
    return await db.read(lambda uow: _deposit(uow, platform_id))
