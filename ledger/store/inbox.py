"""The ``notifications`` table: every delivery DOKU made, good or bad, with its outcome."""

from __future__ import annotations

import asyncpg
import msgspec


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str | None
    invoice_number: str | None
    transaction_status: str | None
    amount: int | None
    body: bytes
    outcome: str
    detail: str | None = None


class InboxTable:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def keep(self, platform_id: str, delivery: Delivery) -> None:
        await self.conn.execute(
            """
            INSERT INTO notifications (platform_id, request_id, invoice_number, transaction_status, amount, body,
                                       outcome, detail)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            platform_id,
            delivery.request_id,
            delivery.invoice_number,
            delivery.transaction_status,
            delivery.amount,
            delivery.body,
            delivery.outcome,
            delivery.detail,
        )
