"""The ``refunds`` table (SQL only; the rules live in ``ledger.refunds`` and ``ledger.service.refunds``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from ledger import errors, split
from ledger.refunds import Refund, RefundMode


def refund_from_row(row: asyncpg.Record) -> Refund:
    return Refund(
        refund_id=row["refund_id"],
        invoice_number=row["invoice_number"],
        amount=row["amount"],
        reason=row["reason"],
        mode=row["mode"],
        reference=row["reference"],
        explicit=row["explicit"],
        status=row["status"],
        reversal=msgspec.convert(row["reversal"], split.Reversal) if row["reversal"] is not None else None,
        entry_id=row["entry_id"],
        doku_request_id=row["doku_request_id"],
        failure=row["failure"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
        line_items={int(k): v for k, v in row["line_items"].items()} if row["line_items"] is not None else None,
        cleared_at=row["cleared_at"],
        cleared_by=row["cleared_by"],
        clearing_entry_id=row["clearing_entry_id"],
    )


class RefundsTable:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self, platform_id: str, refund_id: str, *, for_update: bool = False) -> Refund:
        row = await self.conn.fetchrow(
            "SELECT * FROM refunds WHERE platform_id = $1 AND refund_id = $2" + (" FOR UPDATE" if for_update else ""),
            platform_id,
            refund_id,
        )
        if row is None:
            raise errors.RefundNotFound(f"no refund {refund_id!r}", refund_id=refund_id)
        return refund_from_row(row)

    async def find(self, platform_id: str, refund_id: str) -> Refund | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM refunds WHERE platform_id = $1 AND refund_id = $2", platform_id, refund_id
        )
        return refund_from_row(row) if row is not None else None

    async def of_order(self, platform_id: str, invoice_number: str) -> list[Refund]:
        rows = await self.conn.fetch(
            "SELECT * FROM refunds WHERE platform_id = $1 AND invoice_number = $2 ORDER BY created_at, refund_id",
            platform_id,
            invoice_number,
        )
        return [refund_from_row(r) for r in rows]

    async def insert(
        self,
        platform_id: str,
        *,
        refund_id: str,
        invoice_number: str,
        amount: int,
        reason: str,
        mode: RefundMode,
        reference: str | None,
        explicit: dict[str, int] | None,
        line_items: dict[int, int] | None = None,
    ) -> Refund:
        row = await self.conn.fetchrow(
            """
            INSERT INTO refunds (platform_id, refund_id, invoice_number, amount, reason, mode, reference, explicit,
                                 status, doku_request_id, line_items)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested', $9, $10)
            ON CONFLICT (platform_id, refund_id) DO NOTHING
            RETURNING *
            """,
            platform_id,
            refund_id,
            invoice_number,
            amount,
            reason,
            mode,
            reference,
            explicit,
            refund_id if mode == "gateway" else None,
            {str(k): v for k, v in line_items.items()} if line_items is not None else None,
        )
        if row is None:
            raise errors.IdempotencyConflict(f"refund {refund_id!r} exists", refund_id=refund_id)
        return refund_from_row(row)

    async def succeed(
        self,
        platform_id: str,
        refund_id: str,
        reversal: split.Reversal,
        entry_id: int,
        reference: str | None,
        *,
        cleared_by: str | None = None,
    ) -> Refund:
        """Mark a refund succeeded with its reversal; ``cleared_by`` when its money left at once (manual)."""
        row = await self.conn.fetchrow(
            """
            UPDATE refunds SET status = 'succeeded', reversal = $3, entry_id = $4, completed_at = now(),
                   reference = coalesce($5, reference),
                   cleared_at = now() + CASE WHEN $6::text IS NULL THEN NULL ELSE interval '0' END, cleared_by = $6
             WHERE platform_id = $1 AND refund_id = $2 RETURNING *
            """,
            platform_id,
            refund_id,
            reversal,
            entry_id,
            reference,
            cleared_by,
        )
        return refund_from_row(row)

    async def clear(self, platform_id: str, refund_id: str, *, entry_id: int, cleared_by: str) -> Refund:
        """The refund's money finally left: DOKU deducted it, or its Refund Service paid it."""
        row = await self.conn.fetchrow(
            """
            UPDATE refunds SET cleared_at = now(), cleared_by = $4, clearing_entry_id = $3
             WHERE platform_id = $1 AND refund_id = $2 RETURNING *
            """,
            platform_id,
            refund_id,
            entry_id,
            cleared_by,
        )
        return refund_from_row(row)

    async def of_orders(self, platform_id: str, invoices: Sequence[str]) -> dict[str, list[Refund]]:
        """Each order's refunds, oldest first."""
        rows = await self.conn.fetch(
            """
            SELECT * FROM refunds WHERE platform_id = $1 AND invoice_number = ANY($2::text[])
             ORDER BY invoice_number, created_at, refund_id
            """,
            platform_id,
            sorted(set(invoices)),
        )
        found: dict[str, list[Refund]] = {}
        for row in rows:
            found.setdefault(row["invoice_number"], []).append(refund_from_row(row))
        return found

    async def requested_total(self, platform_id: str, mode: str) -> int:
        """What refunds of ``mode`` still requested add up to (a deposit refund being recorded)."""
        total: int = await self.conn.fetchval(
            "SELECT coalesce(sum(amount), 0)::bigint FROM refunds WHERE platform_id = $1 AND mode = $2 "
            "AND status = 'requested'",
            platform_id,
            mode,
        )
        return total

    async def fail(self, platform_id: str, refund_id: str, failure: dict[str, Any]) -> Refund:
        row = await self.conn.fetchrow(
            """
            UPDATE refunds SET status = 'failed', failure = $3, completed_at = now()
             WHERE platform_id = $1 AND refund_id = $2 RETURNING *
            """,
            platform_id,
            refund_id,
            failure,
        )
        return refund_from_row(row)
