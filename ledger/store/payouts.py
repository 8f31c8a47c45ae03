"""The ``payouts`` table (SQL only; the rules live in ``ledger.payouts`` and ``ledger.service.payouts``)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from ledger import errors
from ledger.payouts import Payout, PayoutStatus


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


class PayoutsTable:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def find(self, platform_id: str, payout_id: str) -> Payout | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM payouts WHERE platform_id = $1 AND payout_id = $2", platform_id, payout_id
        )
        return payout_from_row(row) if row is not None else None

    async def get(self, platform_id: str, payout_id: str, *, for_update: bool = False) -> Payout:
        row = await self.conn.fetchrow(
            "SELECT * FROM payouts WHERE platform_id = $1 AND payout_id = $2" + (" FOR UPDATE" if for_update else ""),
            platform_id,
            payout_id,
        )
        if row is None:
            raise errors.PayoutNotFound(f"no payout {payout_id!r}", payout_id=payout_id)
        return payout_from_row(row)

    async def insert(
        self,
        platform_id: str,
        *,
        payout_id: str,
        seller_id: str,
        amount: int,
        status: PayoutStatus,
        reference: str | None,
        request_entry_id: int,
        completion_entry_id: int | None,
    ) -> Payout:
        row = await self.conn.fetchrow(
            """
            INSERT INTO payouts (platform_id, payout_id, seller_id, amount, status, reference, request_entry_id,
                                 completion_entry_id, completed_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + CASE WHEN $5 = 'paid' THEN interval '0' END)
            ON CONFLICT (platform_id, payout_id) DO NOTHING
            RETURNING *
            """,
            platform_id,
            payout_id,
            seller_id,
            amount,
            status,
            reference,
            request_entry_id,
            completion_entry_id,
        )
        if row is None:  # the same id, used for another seller at the same moment
            raise errors.IdempotencyConflict(f"payout {payout_id!r} exists", payout_id=payout_id)
        return payout_from_row(row)

    async def complete(
        self,
        platform_id: str,
        payout_id: str,
        status: PayoutStatus,
        entry_id: int,
        *,
        reference: str | None = None,
        reason: str | None = None,
    ) -> Payout:
        row = await self.conn.fetchrow(
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

    async def page(
        self,
        platform_id: str,
        *,
        seller_id: str | None = None,
        status: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Payout]:
        """Payouts oldest first; ``after`` is the ``(created_at, payout_id)`` of the last one seen."""
        rows = await self.conn.fetch(
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
