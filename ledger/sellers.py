"""Sellers: who can be paid, each with its pending, available and debt accounts.

Rule: a seller and its three ledger accounts are created in one transaction, or not at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from ledger import chart, errors
from ledger.split import RESERVED_PARTIES
from ledger.store import LedgerStore


class Seller(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    name: str
    commission_bps: int | None
    doku_settlement_id: str | None
    metadata: dict[str, Any]
    created_at: datetime


def _seller(row: asyncpg.Record) -> Seller:
    meta = row["metadata"]
    return Seller(
        seller_id=row["seller_id"],
        name=row["name"],
        commission_bps=row["commission_bps"],
        doku_settlement_id=row["doku_settlement_id"],
        metadata=msgspec.json.decode(meta) if isinstance(meta, str) else dict(meta or {}),
        created_at=row["created_at"],
    )


async def create_seller(
    pool: asyncpg.Pool,
    store: LedgerStore,
    platform_id: str,
    *,
    seller_id: str,
    name: str,
    commission_bps: int | None = None,
    doku_settlement_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Seller:
    if seller_id in RESERVED_PARTIES:
        raise errors.ReservedSellerId(f"{seller_id!r} names a party of every split; choose another id")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO sellers (platform_id, seller_id, name, commission_bps, doku_settlement_id, metadata)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb)
            ON CONFLICT (platform_id, seller_id) DO NOTHING
            RETURNING *
            """,
            platform_id,
            seller_id,
            name,
            commission_bps,
            doku_settlement_id,
            msgspec.json.encode(metadata or {}).decode(),
        )
        if row is None:
            raise errors.SellerExists(f"seller {seller_id!r} exists", seller_id=seller_id)
        await store.open_accounts(platform_id, chart.seller_accounts(seller_id), conn=conn)
    return _seller(row)


async def get_seller(conn: asyncpg.Connection | asyncpg.Pool, platform_id: str, seller_id: str) -> Seller:
    row = await conn.fetchrow("SELECT * FROM sellers WHERE platform_id = $1 AND seller_id = $2", platform_id, seller_id)
    if row is None:
        raise errors.SellerNotFound(f"no seller {seller_id!r}", seller_id=seller_id)
    return _seller(row)


async def list_sellers(
    conn: asyncpg.Connection | asyncpg.Pool, platform_id: str, *, after: str | None = None, limit: int = 100
) -> list[Seller]:
    rows = await conn.fetch(
        """
        SELECT * FROM sellers WHERE platform_id = $1 AND ($2::text IS NULL OR seller_id > $2)
         ORDER BY seller_id LIMIT $3
        """,
        platform_id,
        after,
        limit,
    )
    return [_seller(r) for r in rows]


async def sellers_by_id(
    conn: asyncpg.Connection | asyncpg.Pool, platform_id: str, seller_ids: list[str]
) -> dict[str, Seller]:
    rows = await conn.fetch(
        "SELECT * FROM sellers WHERE platform_id = $1 AND seller_id = ANY($2::text[])", platform_id, seller_ids
    )
    return {r["seller_id"]: _seller(r) for r in rows}
