"""The ``sellers`` table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from ledger import errors
from ledger.sellers import Seller


def _seller(row: asyncpg.Record) -> Seller:
    return Seller(
        seller_id=row["seller_id"],
        name=row["name"],
        commission_bps=row["commission_bps"],
        doku_settlement_id=row["doku_settlement_id"],
        metadata=row["metadata"] or {},
        created_at=row["created_at"],
    )


class SellersTable:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def insert(
        self,
        platform_id: str,
        *,
        seller_id: str,
        name: str,
        commission_bps: int | None,
        doku_settlement_id: str | None,
        metadata: dict[str, Any],
    ) -> Seller:
        row = await self.conn.fetchrow(
            """
            INSERT INTO sellers (platform_id, seller_id, name, commission_bps, doku_settlement_id, metadata)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (platform_id, seller_id) DO NOTHING
            RETURNING *
            """,
            platform_id,
            seller_id,
            name,
            commission_bps,
            doku_settlement_id,
            metadata,
        )
        if row is None:
            raise errors.SellerExists(f"seller {seller_id!r} exists", seller_id=seller_id)
        return _seller(row)

    async def get(self, platform_id: str, seller_id: str, *, for_update: bool = False) -> Seller:
        row = await self.conn.fetchrow(
            "SELECT * FROM sellers WHERE platform_id = $1 AND seller_id = $2" + (" FOR UPDATE" if for_update else ""),
            platform_id,
            seller_id,
        )
        if row is None:
            raise errors.SellerNotFound(f"no seller {seller_id!r}", seller_id=seller_id)
        return _seller(row)

    async def update(
        self,
        platform_id: str,
        seller_id: str,
        *,
        name: str,
        commission_bps: int | None,
        doku_settlement_id: str | None,
        metadata: dict[str, Any],
    ) -> Seller:
        """Replace the seller's changeable fields (orders keep the allocation they froze)."""
        row = await self.conn.fetchrow(
            """
            UPDATE sellers SET name = $3, commission_bps = $4, doku_settlement_id = $5, metadata = $6
             WHERE platform_id = $1 AND seller_id = $2
            RETURNING *
            """,
            platform_id,
            seller_id,
            name,
            commission_bps,
            doku_settlement_id,
            metadata,
        )
        if row is None:
            raise errors.SellerNotFound(f"no seller {seller_id!r}", seller_id=seller_id)
        return _seller(row)

    async def page(self, platform_id: str, *, after: str | None = None, limit: int = 100) -> list[Seller]:
        rows = await self.conn.fetch(
            """
            SELECT * FROM sellers WHERE platform_id = $1 AND ($2::text IS NULL OR seller_id > $2)
             ORDER BY seller_id LIMIT $3
            """,
            platform_id,
            after,
            limit,
        )
        return [_seller(r) for r in rows]

    async def by_id(self, platform_id: str, seller_ids: Sequence[str]) -> dict[str, Seller]:
        rows = await self.conn.fetch(
            "SELECT * FROM sellers WHERE platform_id = $1 AND seller_id = ANY($2::text[])",
            platform_id,
            list(seller_ids),
        )
        return {r["seller_id"]: _seller(r) for r in rows}
