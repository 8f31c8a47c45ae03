"""The ``orders`` table: an order's frozen allocation and its life (SQL only; rules live in ``ledger.orders``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ledger import errors, split
from ledger.orders import OPEN_STATUSES, Capturable, Order, OrderPolicy, OrderStatus

# The capture path decodes the allocation straight from its JSON text into the typed record.
_decode_allocation = msgspec.json.Decoder(split.Allocation).decode


def order_from_row(row: asyncpg.Record) -> Order:
    return Order(
        invoice_number=row["invoice_number"],
        amount=row["amount"],
        status=row["status"],
        request=row["request"],
        policy=msgspec.convert(row["policy"], OrderPolicy),
        allocation=msgspec.convert(row["allocation"], split.Allocation),
        reversed=msgspec.convert(row["reversed"], split.Reversal) if row["reversed"] is not None else None,
        refunded_amount=row["refunded_amount"],
        refund_reserved=row["refund_reserved"],
        doku_request_id=row["doku_request_id"],
        doku_error=row["doku_error"],
        capture_entry_id=row["capture_entry_id"],
        captured_at=row["captured_at"],
        settled_at=row["settled_at"],
        settlement_entry_id=row["settlement_entry_id"],
        closed_reason=row["closed_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class OrdersTable:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def insert(
        self,
        platform_id: str,
        *,
        invoice_number: str,
        amount: int,
        request: dict[str, Any],
        policy: OrderPolicy,
        allocation: split.Allocation,
        doku_request_id: str,
    ) -> Order:
        row = await self.conn.fetchrow(
            """
            INSERT INTO orders (platform_id, invoice_number, amount, status, request, policy, allocation,
                                doku_request_id)
            VALUES ($1, $2, $3, 'created', $4, $5, $6, $7)
            ON CONFLICT (platform_id, invoice_number) DO NOTHING
            RETURNING *
            """,
            platform_id,
            invoice_number,
            amount,
            request,
            policy,
            allocation,
            doku_request_id,
        )
        if row is None:
            raise errors.OrderExists(f"order {invoice_number!r} exists", invoice_number=invoice_number)
        return order_from_row(row)

    async def get(self, platform_id: str, invoice_number: str, *, for_update: bool = False) -> Order:
        row = await self.conn.fetchrow(
            "SELECT * FROM orders WHERE platform_id = $1 AND invoice_number = $2"
            + (" FOR UPDATE" if for_update else ""),
            platform_id,
            invoice_number,
        )
        if row is None:
            raise errors.OrderNotFound(f"no order {invoice_number!r}", invoice_number=invoice_number)
        return order_from_row(row)

    async def lock_many(self, platform_id: str, invoices: Sequence[str]) -> dict[str, Order]:
        """Lock the orders (in invoice order, like every multi-order writer) and return them."""
        rows = await self.conn.fetch(
            """
            SELECT * FROM orders WHERE platform_id = $1 AND invoice_number = ANY($2::text[])
             ORDER BY invoice_number FOR UPDATE
            """,
            platform_id,
            sorted(set(invoices)),
        )
        return {r["invoice_number"]: order_from_row(r) for r in rows}

    async def page(
        self,
        platform_id: str,
        *,
        status: str | None = None,
        seller_id: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Order]:
        rows = await self.conn.fetch(
            """
            SELECT * FROM orders
             WHERE platform_id = $1
               AND ($2::text IS NULL OR status = $2)
               AND ($3::text IS NULL
                    OR allocation -> 'sellers' @> jsonb_build_array(jsonb_build_object('seller_id', $3::text)))
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
        self,
        platform_id: str,
        invoice_number: str,
        status: OrderStatus,
        *,
        only_from: Sequence[str] = OPEN_STATUSES,
        doku_error: dict[str, Any] | None = None,
        closed_reason: str | None = None,
    ) -> Order | None:
        """Move an open order to ``status``; returns it, or None when it was no longer in ``only_from``."""
        row = await self.conn.fetchrow(
            """
            UPDATE orders SET status = $3, doku_error = coalesce($4::jsonb, doku_error),
                   closed_reason = coalesce($5, closed_reason), updated_at = now()
             WHERE platform_id = $1 AND invoice_number = $2 AND status = ANY($6::text[])
            RETURNING *
            """,
            platform_id,
            invoice_number,
            status,
            doku_error,
            closed_reason,
            list(only_from),
        )
        return order_from_row(row) if row is not None else None

    async def lock_for_capture(self, platform_id: str, invoices: Sequence[str]) -> dict[str, Capturable]:
        """Only what capture reads (the hot path; the order's request document is large), locked."""
        rows = await self.conn.fetch(
            """
            SELECT invoice_number, amount, status, capture_entry_id, closed_reason, allocation::text AS allocation
              FROM orders WHERE platform_id = $1 AND invoice_number = ANY($2::text[])
             ORDER BY invoice_number FOR UPDATE
            """,
            platform_id,
            sorted(set(invoices)),
        )
        return {
            r["invoice_number"]: Capturable(
                amount=r["amount"],
                status=r["status"],
                capture_entry_id=r["capture_entry_id"],
                allocation=_decode_allocation(r["allocation"]),
                closed_reason=r["closed_reason"],
            )
            for r in rows
        }

    async def mark_captured(
        self, platform_id: str, invoices: Sequence[str], entry_ids: Sequence[int], ats: Sequence[datetime | None]
    ) -> list[Order]:
        """Mark the orders captured; returns them as captured, in invoice order."""
        rows = await self.conn.fetch(
            """
            UPDATE orders o SET status = 'captured', capture_entry_id = s.entry_id,
                   captured_at = coalesce(s.at, (SELECT now())), closed_reason = NULL, updated_at = now()
              FROM unnest($2::text[], $3::bigint[], $4::timestamptz[]) AS s(invoice_number, entry_id, at)
             WHERE o.platform_id = $1 AND o.invoice_number = s.invoice_number
            RETURNING o.*
            """,
            platform_id,
            list(invoices),
            list(entry_ids),
            list(ats),
        )
        return sorted((order_from_row(r) for r in rows), key=lambda o: o.invoice_number)

    async def reserve_refund(self, platform_id: str, invoice_number: str, amount: int) -> None:
        """Reserve (positive) or release (negative) part of the order for a refund in flight."""
        await self.conn.execute(
            "UPDATE orders SET refund_reserved = refund_reserved + $3, updated_at = now() "
            "WHERE platform_id = $1 AND invoice_number = $2",
            platform_id,
            invoice_number,
            amount,
        )

    async def record_reversal(
        self, platform_id: str, invoice_number: str, cumulative: split.Reversal, amount: int
    ) -> None:
        await self.conn.execute(
            """
            UPDATE orders SET reversed = $3, refunded_amount = refunded_amount + $4, updated_at = now()
             WHERE platform_id = $1 AND invoice_number = $2
            """,
            platform_id,
            invoice_number,
            cumulative,
            amount,
        )

    async def mark_settled(self, platform_id: str, invoices: Sequence[str], entry_ids: Sequence[int]) -> None:
        await self.conn.execute(
            """
            UPDATE orders o SET settled_at = now(), settlement_entry_id = s.entry_id, updated_at = now()
              FROM unnest($2::text[], $3::bigint[]) AS s(invoice_number, entry_id)
             WHERE o.platform_id = $1 AND o.invoice_number = s.invoice_number
            """,
            platform_id,
            list(invoices),
            list(entry_ids),
        )

    async def open_older_than(self, platform_id: str, before: datetime, limit: int = 500) -> list[str]:
        """Invoice numbers of the platform's orders still waiting for DOKU since before ``before``."""
        rows = await self.conn.fetch(
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
