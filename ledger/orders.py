"""Orders: the frozen allocation, the order's life, and capture exactly once.

Rules:
* The allocation is computed and frozen when the order is created; capture, refunds and
  settlement only ever read it.
* Capture is set-based: ``capture_batch`` locks the orders it touches (sorted), posts all their
  capture entries in one ``LedgerStore.post`` call and updates the orders with one statement, so a
  batcher can group many notifications into one transaction. The entry's idempotency key
  ``capture:<invoice>`` makes a second capture of the same order a no-op, whatever its source.
* A capture whose amount differs from the order is never posted: the caller turns it into a
  reconciliation exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from ledger import bookings, errors, split
from ledger.model import Posted
from ledger.store import LedgerStore

OrderStatus = Literal["created", "send_failed", "pending", "captured", "failed", "expired"]
OPEN_STATUSES = ("created", "send_failed", "pending")


class OrderPolicy(msgspec.Struct, frozen=True, kw_only=True):
    split: split.SplitPolicy
    fee: split.FeePolicy
    refund: split.RefundPolicy = split.RefundPolicy()
    basis: Literal["gross", "net"] = "gross"


class Order(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    amount: int
    status: OrderStatus
    request: dict[str, Any]
    policy: OrderPolicy
    allocation: split.Allocation
    reversed: split.Reversal | None
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


class CaptureRequest(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    amount: int
    at: datetime | None = None
    source: str = "notification"


class CaptureResult(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    outcome: Literal["captured", "duplicate", "amount_mismatch", "unknown_invoice"]
    entry_id: int | None = None
    expected: int | None = None


_enc = msgspec.json.Encoder(order="sorted")


def _decode(value: Any, type_: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        return msgspec.json.decode(value, type=type_)
    return msgspec.convert(value, type_)


def order_from_row(row: asyncpg.Record) -> Order:
    return Order(
        invoice_number=row["invoice_number"],
        amount=row["amount"],
        status=row["status"],
        request=_decode(row["request"], dict),
        policy=_decode(row["policy"], OrderPolicy),
        allocation=_decode(row["allocation"], split.Allocation),
        reversed=_decode(row["reversed"], split.Reversal),
        refunded_amount=row["refunded_amount"],
        refund_reserved=row["refund_reserved"],
        doku_request_id=row["doku_request_id"],
        doku_error=_decode(row["doku_error"], dict),
        capture_entry_id=row["capture_entry_id"],
        captured_at=row["captured_at"],
        settled_at=row["settled_at"],
        settlement_entry_id=row["settlement_entry_id"],
        closed_reason=row["closed_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def insert_order(
    conn: asyncpg.Connection | asyncpg.Pool,
    platform_id: str,
    *,
    invoice_number: str,
    amount: int,
    request: dict[str, Any],
    policy: OrderPolicy,
    allocation: split.Allocation,
    doku_request_id: str,
) -> Order:
    row = await conn.fetchrow(
        """
        INSERT INTO orders (platform_id, invoice_number, amount, status, request, policy, allocation, doku_request_id)
        VALUES ($1, $2, $3, 'created', $4::jsonb, $5::jsonb, $6::jsonb, $7)
        ON CONFLICT (platform_id, invoice_number) DO NOTHING
        RETURNING *
        """,
        platform_id,
        invoice_number,
        amount,
        _enc.encode(request).decode(),
        _enc.encode(policy).decode(),
        _enc.encode(allocation).decode(),
        doku_request_id,
    )
    if row is None:
        raise errors.OrderExists(f"order {invoice_number!r} exists", invoice_number=invoice_number)
    return order_from_row(row)


async def get_order(
    conn: asyncpg.Connection | asyncpg.Pool, platform_id: str, invoice_number: str, *, for_update: bool = False
) -> Order:
    row = await conn.fetchrow(
        "SELECT * FROM orders WHERE platform_id = $1 AND invoice_number = $2" + (" FOR UPDATE" if for_update else ""),
        platform_id,
        invoice_number,
    )
    if row is None:
        raise errors.OrderNotFound(f"no order {invoice_number!r}", invoice_number=invoice_number)
    return order_from_row(row)


async def list_orders(
    conn: asyncpg.Connection | asyncpg.Pool,
    platform_id: str,
    *,
    status: str | None = None,
    seller_id: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[Order]:
    rows = await conn.fetch(
        """
        SELECT * FROM orders
         WHERE platform_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR allocation -> 'sellers' @> jsonb_build_array(jsonb_build_object('seller_id', $3::text)))
           AND ($4::timestamptz IS NULL OR created_at >= $4)
           AND ($5::timestamptz IS NULL OR created_at < $5)
           AND ($6::timestamptz IS NULL OR (created_at, invoice_number) > ($6, $7))
         ORDER BY created_at, invoice_number
         LIMIT $8
        """,
        platform_id,
        status,
        seller_id,
        created_from,
        created_to,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [order_from_row(r) for r in rows]


async def set_status(
    conn: asyncpg.Connection | asyncpg.Pool,
    platform_id: str,
    invoice_number: str,
    status: OrderStatus,
    *,
    only_from: Sequence[str] = OPEN_STATUSES,
    doku_error: dict[str, Any] | None = None,
    closed_reason: str | None = None,
) -> Order | None:
    """Move an open order to ``status``; returns it, or None when it was no longer in ``only_from``."""
    row = await conn.fetchrow(
        """
        UPDATE orders SET status = $3, doku_error = coalesce($4::jsonb, doku_error),
               closed_reason = coalesce($5, closed_reason), updated_at = now()
         WHERE platform_id = $1 AND invoice_number = $2 AND status = ANY($6::text[])
        RETURNING *
        """,
        platform_id,
        invoice_number,
        status,
        _enc.encode(doku_error).decode() if doku_error is not None else None,
        closed_reason,
        list(only_from),
    )
    return order_from_row(row) if row is not None else None


class _Capturable(msgspec.Struct, frozen=True, kw_only=True):
    amount: int
    status: str
    capture_entry_id: int | None
    allocation: split.Allocation


async def capture_batch(
    conn: asyncpg.Connection, store: LedgerStore, platform_id: str, requests: Sequence[CaptureRequest]
) -> list[CaptureResult]:
    """Capture many orders in the caller's transaction; one result per request, in order."""
    invoices = sorted({r.invoice_number for r in requests})
    # Only what capture reads: this is the hot path, and the order's request document is large.
    rows = await conn.fetch(
        """
        SELECT invoice_number, amount, status, capture_entry_id, allocation
          FROM orders WHERE platform_id = $1 AND invoice_number = ANY($2::text[])
         ORDER BY invoice_number FOR UPDATE
        """,
        platform_id,
        invoices,
    )
    orders = {
        r["invoice_number"]: _Capturable(
            amount=r["amount"],
            status=r["status"],
            capture_entry_id=r["capture_entry_id"],
            allocation=_decode(r["allocation"], split.Allocation),
        )
        for r in rows
    }
    results: list[CaptureResult | None] = [None] * len(requests)
    to_post: list[tuple[int, CaptureRequest, _Capturable]] = []
    claimed: set[str] = set()
    for index, req in enumerate(requests):
        order = orders.get(req.invoice_number)
        if order is None:
            results[index] = CaptureResult(invoice_number=req.invoice_number, outcome="unknown_invoice")
        elif req.amount != order.amount:
            results[index] = CaptureResult(
                invoice_number=req.invoice_number, outcome="amount_mismatch", expected=order.amount
            )
        elif order.status == "captured" or req.invoice_number in claimed:
            results[index] = CaptureResult(
                invoice_number=req.invoice_number, outcome="duplicate", entry_id=order.capture_entry_id
            )
        else:
            claimed.add(req.invoice_number)
            to_post.append((index, req, order))
    if to_post:
        drafts = [
            bookings.capture_entry(
                req.invoice_number,
                gross=order.allocation.gross,
                fee=order.allocation.fee,
                platform=order.allocation.platform,
                sellers={s.seller_id: s.net for s in order.allocation.sellers},
                at=req.at,
            )
            for _, req, order in to_post
        ]
        posted = await store.post(platform_id, drafts, conn=conn)
        captured_invoices, entry_ids, captured_ats = [], [], []
        for (index, req, _), result in zip(to_post, posted):
            if not isinstance(result, Posted):
                # Capture credits only; it can fail only if the ledger itself is broken.
                raise errors.InvalidEntry([(result.code, result.detail)])
            captured_invoices.append(req.invoice_number)
            entry_ids.append(result.entry_id)
            captured_ats.append(req.at)
            results[index] = CaptureResult(
                invoice_number=req.invoice_number,
                outcome="duplicate" if result.replayed else "captured",
                entry_id=result.entry_id,
            )
        await conn.execute(
            """
            UPDATE orders o SET status = 'captured', capture_entry_id = s.entry_id,
                   captured_at = coalesce(s.at, now()), closed_reason = NULL, updated_at = now()
              FROM unnest($2::text[], $3::bigint[], $4::timestamptz[]) AS s(invoice_number, entry_id, at)
             WHERE o.platform_id = $1 AND o.invoice_number = s.invoice_number
            """,
            platform_id,
            captured_invoices,
            entry_ids,
            captured_ats,
        )
    return [r for r in results if r is not None]


async def capture(
    pool: asyncpg.Pool, store: LedgerStore, platform_id: str, request: CaptureRequest
) -> CaptureResult:
    """Capture one order in its own transaction (the batcher is the high-throughput path)."""

    async def work(conn: asyncpg.Connection) -> CaptureResult:
        (result,) = await capture_batch(conn, store, platform_id, [request])
        return result

    return await store.run_in_transaction(work)


async def pending_orders_older_than(
    conn: asyncpg.Connection | asyncpg.Pool, platform_id: str, before: datetime, limit: int = 500
) -> list[str]:
    """Invoice numbers of the platform's orders still waiting for DOKU since before ``before``."""
    rows = await conn.fetch(
        """
        SELECT invoice_number FROM orders
         WHERE platform_id = $1 AND status IN ('pending', 'send_failed', 'created') AND created_at < $2
         ORDER BY created_at LIMIT $3
        """,
        platform_id,
        before,
        limit,
    )
    return [r["invoice_number"] for r in rows]
