"""The ``platforms`` and ``api_keys`` tables: tenants and the hashes of their API keys."""

from __future__ import annotations

import asyncpg


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

    async def add_key(self, platform_id: str, key_id: str, key_hash: bytes) -> None:
        await self.conn.execute(
            "INSERT INTO api_keys (platform_id, key_id, key_hash) VALUES ($1, $2, $3)", platform_id, key_id, key_hash
        )

    async def key_hash(self, platform_id: str, key_id: str) -> bytes | None:
        stored = await self.conn.fetchval(
            "SELECT key_hash FROM api_keys WHERE platform_id = $1 AND key_id = $2 AND revoked_at IS NULL",
            platform_id,
            key_id,
        )
        return bytes(stored) if stored is not None else None
