"""Payouts: paying a seller what is available, pending → paid | failed.

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

from collections.abc import Callable
from datetime import datetime
from typing import Literal

import asyncpg
import msgspec

from ledger import bookings, chart, errors
from ledger.model import EntryDraft
from ledger.sellers import get_seller
from ledger.store import LedgerStore, raise_rejection

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


def payout_from_row(row: asyncpg.Record) -> Payout:
    return Payout(
        payout_id=row["payout_id"],
        seller_id=row["seller_id"],
        amount=row["amount"],
        status=row["status"],
        reference=row["reference"],
        request_entry_id=row["request_entry_id"],
        completion_entry_id=row["completion_entry_id"],
        failure_reason=row["failure_reason"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
    )


async def create_payout(
    pool: asyncpg.Pool,
    store: LedgerStore,
    platform_id: str,
    *,
    payout_id: str,
    seller_id: str,
    amount: int,
    reference: str | None = None,
    mark_paid: bool = False,
) -> Payout:
    """Request a payout of ``amount`` to a seller (already paid with ``mark_paid``)."""
    if type(amount) is not int or amount <= 0:
        raise errors.InvalidEntry([("invalid_amount", f"payout amount must be a positive int, got {amount!r}")])

    async def work(conn: asyncpg.Connection) -> Payout:
        await get_seller(conn, platform_id, seller_id)
        balance = await _lock_seller(conn, platform_id, seller_id, with_bank=mark_paid)
        # Checked after the lock: a concurrent request with the same id has committed by now.
        existing = await conn.fetchrow(
            "SELECT * FROM payouts WHERE platform_id = $1 AND payout_id = $2", platform_id, payout_id
        )
        if existing is not None:
            return _same_payout(payout_from_row(existing), seller_id, amount)
        payable = balance[chart.seller_available(seller_id)] - balance[chart.seller_debt(seller_id)]
        if amount > payable:
            raise errors.PayoutExceedsAvailable(
                f"payout of {amount} exceeds the {max(payable, 0)} available", requested=amount,
                available=max(payable, 0),
            )
        drafts = [bookings.payout_request_entry(payout_id, seller_id, amount)]
        if mark_paid:
            drafts.append(bookings.payout_paid_entry(payout_id, seller_id, amount))
        posted = [raise_rejection(r) for r in await store.post(platform_id, drafts, conn=conn)]
        row = await conn.fetchrow(
            """
            INSERT INTO payouts (platform_id, payout_id, seller_id, amount, status, reference, request_entry_id,
                                 completion_entry_id, completed_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $5 = 'paid' THEN now() END)
            ON CONFLICT (platform_id, payout_id) DO NOTHING
            RETURNING *
            """,
            platform_id,
            payout_id,
            seller_id,
            amount,
            "paid" if mark_paid else "pending",
            reference,
            posted[0].entry_id,
            posted[1].entry_id if mark_paid else None,
        )
        if row is None:  # the same id, used for another seller at the same moment
            raise errors.IdempotencyConflict(f"payout {payout_id!r} exists", payout_id=payout_id)
        return payout_from_row(row)

    return await store.run_in_transaction(work)


def _same_payout(payout: Payout, seller_id: str, amount: int) -> Payout:
    if (payout.seller_id, payout.amount) != (seller_id, amount):
        raise errors.IdempotencyConflict(
            f"payout {payout.payout_id!r} exists for {payout.seller_id} / {payout.amount}", payout_id=payout.payout_id
        )
    return payout


async def _lock_seller(
    conn: asyncpg.Connection, platform_id: str, seller_id: str, *, with_bank: bool
) -> dict[str, int]:
    """Lock (in account order) every account a payout of this seller touches; return balances."""
    codes = [chart.seller_available(seller_id), chart.seller_debt(seller_id), chart.PAYOUTS_IN_TRANSIT]
    if with_bank:
        codes.append(chart.BANK)
    rows = await conn.fetch(
        "SELECT code, balance FROM accounts WHERE platform_id = $1 AND code = ANY($2::text[]) "
        "ORDER BY account_id FOR UPDATE",
        platform_id,
        codes,
    )
    balance = {r["code"]: r["balance"] for r in rows}
    missing = [code for code in codes if code not in balance]
    if missing:
        raise errors.UnknownAccount(f"no account {missing[0]!r}", account=missing[0])
    return balance


async def confirm_payout(
    pool: asyncpg.Pool, store: LedgerStore, platform_id: str, payout_id: str, *, reference: str | None = None
) -> Payout:
    """The bank paid it: in transit → bank. A paid payout is returned unchanged."""
    return await _finish(store, platform_id, payout_id, "paid", bookings.payout_paid_entry, reference=reference)


async def fail_payout(
    pool: asyncpg.Pool, store: LedgerStore, platform_id: str, payout_id: str, *, reason: str
) -> Payout:
    """The bank refused it: the money goes back to available. A failed payout is returned unchanged."""
    return await _finish(store, platform_id, payout_id, "failed", bookings.payout_failed_entry, reason=reason)


async def _finish(
    store: LedgerStore,
    platform_id: str,
    payout_id: str,
    status: PayoutStatus,
    entry_for: Callable[[str, str, int], EntryDraft],
    **details: str | None,
) -> Payout:
    """Move a pending payout to ``status`` with its entry, once; the same move again is a no-op."""

    async def work(conn: asyncpg.Connection) -> Payout:
        payout = await get_payout(conn, platform_id, payout_id, for_update=True)
        if payout.status == status:
            return payout
        if payout.status != "pending":
            raise errors.PayoutNotPending(f"payout {payout_id!r} is {payout.status}", status=payout.status)
        posted = await store.post_one(platform_id, entry_for(payout_id, payout.seller_id, payout.amount), conn=conn)
        return await _complete(conn, platform_id, payout_id, status, posted.entry_id, **details)

    return await store.run_in_transaction(work)


async def _complete(
    conn: asyncpg.Connection,
    platform_id: str,
    payout_id: str,
    status: PayoutStatus,
    entry_id: int,
    *,
    reference: str | None = None,
    reason: str | None = None,
) -> Payout:
    row = await conn.fetchrow(
        """
        UPDATE payouts SET status = $3, completion_entry_id = $4, completed_at = now(),
               reference = coalesce($5, reference), failure_reason = $6
         WHERE platform_id = $1 AND payout_id = $2
         RETURNING *
        """,
        platform_id,
        payout_id,
        status,
        entry_id,
        reference,
        reason,
    )
    return payout_from_row(row)


async def get_payout(
    conn: asyncpg.Connection | asyncpg.Pool, platform_id: str, payout_id: str, *, for_update: bool = False
) -> Payout:
    row = await conn.fetchrow(
        "SELECT * FROM payouts WHERE platform_id = $1 AND payout_id = $2" + (" FOR UPDATE" if for_update else ""),
        platform_id,
        payout_id,
    )
    if row is None:
        raise errors.PayoutNotFound(f"no payout {payout_id!r}", payout_id=payout_id)
    return payout_from_row(row)


async def list_payouts(
    conn: asyncpg.Connection | asyncpg.Pool,
    platform_id: str,
    *,
    seller_id: str | None = None,
    status: PayoutStatus | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[Payout]:
    """Payouts oldest first; ``after`` is the ``(created_at, payout_id)`` of the last one seen."""
    rows = await conn.fetch(
        """
        SELECT * FROM payouts
         WHERE platform_id = $1
           AND ($2::text IS NULL OR seller_id = $2)
           AND ($3::text IS NULL OR status = $3)
           AND ($4::timestamptz IS NULL OR (created_at, payout_id) > ($4, $5))
         ORDER BY created_at, payout_id
         LIMIT $6
        """,
        platform_id,
        seller_id,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [payout_from_row(r) for r in rows]
