"""The ``platforms`` and ``api_keys`` tables: tenants and the hashes of their API keys."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as the API lists it (never its secret, which is not stored)."""

    id: str
    name: str | None
    status: str  # active | revoked
    created_at: datetime
    revoked_at: datetime | None


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=row["key_id"],
        name=row["name"],
        status="revoked" if row["revoked_at"] is not None else "active",
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class PlatformsTable:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def insert(self, platform_id: str, name: str) -> bool:
        """False when the platform exists."""
        inserted = await self.conn.fetchval(
            "INSERT INTO platforms (platform_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING platform_id",
            platform_id,
            name,
        )
        return inserted is not None

    async def ids(self) -> list[str]:
        return [r["platform_id"] for r in await self.conn.fetch("SELECT platform_id FROM platforms ORDER BY 1")]

    async def add_key(self, platform_id: str, key_id: str, key_hash: bytes, name: str | None = None) -> ApiKey:
        row = await self.conn.fetchrow(
            "INSERT INTO api_keys (platform_id, key_id, key_hash, name) VALUES ($1, $2, $3, $4) RETURNING *",
            platform_id,
            key_id,
            key_hash,
            name,
        )
        return _key(row)

    async def keys(self, platform_id: str) -> list[ApiKey]:
        rows = await self.conn.fetch(
            "SELECT * FROM api_keys WHERE platform_id = $1 ORDER BY created_at, key_id", platform_id
        )
        return [_key(r) for r in rows]

    async def lock_live_keys(self, platform_id: str) -> list[str]:
        """The ids of the platform's live keys, locked (two revocations cannot both leave none)."""
        rows = await self.conn.fetch(
            "SELECT key_id FROM api_keys WHERE platform_id = $1 AND revoked_at IS NULL ORDER BY key_id FOR UPDATE",
            platform_id,
        )
        return [r["key_id"] for r in rows]

    async def revoke_key(self, platform_id: str, key_id: str) -> ApiKey | None:
        row = await self.conn.fetchrow(
            """
            UPDATE api_keys SET revoked_at = coalesce(revoked_at, (SELECT now()))
             WHERE platform_id = $1 AND key_id = $2 RETURNING *
            """,
            platform_id,
            key_id,
        )
        return _key(row) if row is not None else None

    async def key_hash(self, platform_id: str, key_id: str) -> bytes | None:
        stored = await self.conn.fetchval(
            "SELECT key_hash FROM api_keys WHERE platform_id = $1 AND key_id = $2 AND revoked_at IS NULL",
            platform_id,
            key_id,
        )
        return bytes(stored) if stored is not None else None
