"""Refunds: requested → succeeded | failed, with the reversal posted exactly once.

Rules:
* A refund reserves its amount on the order when requested (under the order's row lock), so two
  refunds racing each other can never together exceed what was captured.
* The reversal is computed when the refund succeeds, from the frozen allocation and the cumulative
  reversal so far (``split.reverse``), so any chain of partial refunds adds up to the full reversal.
* A seller's share comes out of pending before settlement and out of available after it; what the
  seller no longer has becomes debt (``bookings.split_seller_debit``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from ledger import bookings, chart, errors, split
from ledger.orders import Order, get_order
from ledger.store import LedgerStore, raise_rejection

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


_enc = msgspec.json.Encoder(order="sorted")


def _load(value: Any, type_: Any) -> Any:
    if value is None:
        return None
    return msgspec.json.decode(value, type=type_) if isinstance(value, str) else msgspec.convert(value, type_)


def refund_from_row(row: asyncpg.Record) -> Refund:
    return Refund(
        refund_id=row["refund_id"],
        invoice_number=row["invoice_number"],
        amount=row["amount"],
        reason=row["reason"],
        mode=row["mode"],
        reference=row["reference"],
        explicit=_load(row["explicit"], dict[str, int]),
        status=row["status"],
        reversal=_load(row["reversal"], split.Reversal),
        entry_id=row["entry_id"],
        doku_request_id=row["doku_request_id"],
        failure=_load(row["failure"], dict),
        created_at=row["created_at"],
        completed_at=row["completed_at"],
    )


async def get_refund(
    conn: asyncpg.Connection | asyncpg.Pool, platform_id: str, refund_id: str, *, for_update: bool = False
) -> Refund:
    row = await conn.fetchrow(
        "SELECT * FROM refunds WHERE platform_id = $1 AND refund_id = $2" + (" FOR UPDATE" if for_update else ""),
        platform_id,
        refund_id,
    )
    if row is None:
        raise errors.RefundNotFound(f"no refund {refund_id!r}", refund_id=refund_id)
    return refund_from_row(row)


async def list_refunds(conn: asyncpg.Connection | asyncpg.Pool, platform_id: str, invoice_number: str) -> list[Refund]:
    rows = await conn.fetch(
        "SELECT * FROM refunds WHERE platform_id = $1 AND invoice_number = $2 ORDER BY created_at, refund_id",
        platform_id,
        invoice_number,
    )
    return [refund_from_row(r) for r in rows]


async def begin_refund(
    pool: asyncpg.Pool,
    platform_id: str,
    *,
    refund_id: str,
    invoice_number: str,
    amount: int,
    reason: str,
    mode: RefundMode,
    reference: str | None = None,
    explicit: dict[str, int] | None = None,
) -> Refund:
    """Validate and reserve a refund; nothing is posted yet."""
    async with pool.acquire() as conn, conn.transaction():
        order = await get_order(conn, platform_id, invoice_number, for_update=True)
        if order.status != "captured":
            raise errors.OrderNotCaptured(f"order {invoice_number!r} is {order.status}", status=order.status)
        left = order.amount - order.refund_reserved
        if amount > left:
            raise errors.RefundExceedsCaptured(
                f"refund of {amount} exceeds the {left} left to refund", requested=amount, refundable=left
            )
        # Dry run: the split engine rejects impossible per-party amounts now, not after DOKU paid out.
        split.reverse(order.allocation, order.reversed, amount, order.policy.refund, explicit=explicit)
        row = await conn.fetchrow(
            """
            INSERT INTO refunds (platform_id, refund_id, invoice_number, amount, reason, mode, reference, explicit,
                                 status, doku_request_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, 'requested', $9)
            RETURNING *
            """,
            platform_id,
            refund_id,
            invoice_number,
            amount,
            reason,
            mode,
            reference,
            _enc.encode(explicit).decode() if explicit is not None else None,
            refund_id if mode == "gateway" else None,
        )
        await conn.execute(
            "UPDATE orders SET refund_reserved = refund_reserved + $3, updated_at = now() "
            "WHERE platform_id = $1 AND invoice_number = $2",
            platform_id,
            invoice_number,
            amount,
        )
    return refund_from_row(row)


async def complete_refund(
    pool: asyncpg.Pool, store: LedgerStore, platform_id: str, refund_id: str, *, reference: str | None = None
) -> Refund:
    """Post the reversal of a requested refund (exactly once) and mark it succeeded."""

    async def work(conn: asyncpg.Connection) -> Refund:
        refund = await get_refund(conn, platform_id, refund_id)
        order = await get_order(conn, platform_id, refund.invoice_number, for_update=True)
        refund = await get_refund(conn, platform_id, refund_id, for_update=True)
        if refund.status != "requested":
            return refund
        reversal = split.reverse(order.allocation, order.reversed, refund.amount, order.policy.refund,
                                 explicit=refund.explicit)
        debits = await _seller_debits(conn, platform_id, order, reversal)
        draft = bookings.refund_entry(
            order.invoice_number,
            refund.refund_id,
            amount=refund.amount,
            mode=refund.mode,
            platform=reversal.platform,
            fee=reversal.fee,
            sellers=debits,
            order_settled=order.settled_at is not None,
        )
        posted = raise_rejection((await store.post(platform_id, [draft], conn=conn))[0])
        cumulative = split.sum_reversals([r for r in (order.reversed, reversal) if r is not None])
        await conn.execute(
            """
            UPDATE orders SET reversed = $3::jsonb, refunded_amount = refunded_amount + $4, updated_at = now()
             WHERE platform_id = $1 AND invoice_number = $2
            """,
            platform_id,
            order.invoice_number,
            _enc.encode(cumulative).decode(),
            refund.amount,
        )
        row = await conn.fetchrow(
            """
            UPDATE refunds SET status = 'succeeded', reversal = $3::jsonb, entry_id = $4, completed_at = now(),
                   reference = coalesce($5, reference)
             WHERE platform_id = $1 AND refund_id = $2 RETURNING *
            """,
            platform_id,
            refund_id,
            _enc.encode(reversal).decode(),
            posted.entry_id,
            reference,
        )
        return refund_from_row(row)

    return await store.run_in_transaction(work)


async def fail_refund(pool: asyncpg.Pool, platform_id: str, refund_id: str, failure: dict[str, Any]) -> Refund:
    """Mark a requested refund failed and release its reservation; nothing was posted."""
    async with pool.acquire() as conn, conn.transaction():
        refund = await get_refund(conn, platform_id, refund_id)
        await get_order(conn, platform_id, refund.invoice_number, for_update=True)
        refund = await get_refund(conn, platform_id, refund_id, for_update=True)
        if refund.status != "requested":
            return refund
        await conn.execute(
            "UPDATE orders SET refund_reserved = refund_reserved - $3, updated_at = now() "
            "WHERE platform_id = $1 AND invoice_number = $2",
            platform_id,
            refund.invoice_number,
            refund.amount,
        )
        row = await conn.fetchrow(
            """
            UPDATE refunds SET status = 'failed', failure = $3::jsonb, completed_at = now()
             WHERE platform_id = $1 AND refund_id = $2 RETURNING *
            """,
            platform_id,
            refund_id,
            _enc.encode(failure).decode(),
        )
    return refund_from_row(row)


async def _seller_debits(
    conn: asyncpg.Connection, platform_id: str, order: Order, reversal: split.Reversal
) -> dict[str, bookings.SellerDebit]:
    sellers = sorted(s for s, amount in reversal.sellers.items() if amount)
    # Lock every account the refund entry can touch, in account order, before reading balances:
    # the same order capture, settlement and payouts use, so none of them can deadlock with us.
    codes = [chart.CLEARING, chart.BANK, chart.COMMISSION, chart.FEES_WITHHELD]
    codes += [c for s in sellers for c in (chart.seller_pending(s), chart.seller_available(s), chart.seller_debt(s))]
    rows = await conn.fetch(
        """
        SELECT code, balance FROM accounts WHERE platform_id = $1 AND code = ANY($2::text[])
         ORDER BY account_id FOR UPDATE
        """,
        platform_id,
        codes,
    )
    balance = {r["code"]: r["balance"] for r in rows}
    net = {part.seller_id: part.net for part in order.allocation.sellers}
    already = order.reversed.sellers if order.reversed is not None else {}
    return {
        s: bookings.split_seller_debit(
            reversal.sellers[s],
            order_settled=order.settled_at is not None,
            order_share=net.get(s, 0) - already.get(s, 0),
            pending=balance.get(chart.seller_pending(s), 0),
            available=balance.get(chart.seller_available(s), 0),
        )
        for s in sellers
    }
