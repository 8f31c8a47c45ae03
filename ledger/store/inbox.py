"""The ``notifications`` table: every delivery DOKU made, good or bad, with its outcome.

Deliveries are kept many at a time (``keep_many``: one statement per batch of notifications), in the
unit of work that applies them, so a delivery is in the inbox exactly when its effect is committed.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

import ledger.store.values as values


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str | None
    invoice_number: str | None
    transaction_status: str | None
    amount: int | None
    body: bytes
    outcome: str
    detail: str | None = None


class InboxTable:
    def __init__(self, conn: asyncpg.Connection, *, distributed: bool = False) -> None:
        self.conn = conn
        self.distributed = distributed  # a Citus cluster: many rows as a VALUES list (ledger/store/values.py)

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

    async def keep_many(self, platform_id: str, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        if self.distributed:
            await values.insert_values(
                self.conn,
                "INSERT INTO notifications (platform_id, request_id, invoice_number, transaction_status, amount, body,"
                " outcome, detail)",
                ("$1", "text", "text", "text", "bigint", "bytea", "text", "text"),
                [
                    (d.request_id, d.invoice_number, d.transaction_status, d.amount, d.body, d.outcome, d.detail)
                    for d in deliveries
                ],
                shared=(platform_id,),
            )
            return
        await self.conn.execute(
            """
            INSERT INTO notifications (platform_id, request_id, invoice_number, transaction_status, amount, body,
                                       outcome, detail)
            SELECT $1, request_id, invoice_number, transaction_status, amount, body, outcome, detail
              FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bytea[], $7::text[], $8::text[])
                   WITH ORDINALITY
                   AS d(request_id, invoice_number, transaction_status, amount, body, outcome, detail, ord)
             ORDER BY ord
            """,
            platform_id,
            [d.request_id for d in deliveries],
            [d.invoice_number for d in deliveries],
            [d.transaction_status for d in deliveries],
            [d.amount for d in deliveries],
            [d.body for d in deliveries],
            [d.outcome for d in deliveries],
            [d.detail for d in deliveries],
        )
