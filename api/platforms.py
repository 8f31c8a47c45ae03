"""Platforms (tenants) and their API keys.

Rule: an API key is shown once and stored only as SHA-256 (keys are 256-bit random, so a plain
hash is enough; no slow KDF needed). The key carries its platform id, so looking it up stays
keyed by platform like every other query: ``sl_<platform_id>_<key_id>_<secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

import asyncpg

from api.problems import ApiError
from ledger import chart
from ledger.store import LedgerStore

_PLATFORM_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "platform"
    return slug


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_api_key(token: str) -> tuple[str, str, str] | None:
    parts = token.split("_", 3)
    if len(parts) != 4 or parts[0] != "sl" or not _PLATFORM_ID.match(parts[1]) or not parts[2] or not parts[3]:
        return None
    return parts[1], parts[2], parts[3]


async def create_platform(conn: asyncpg.Connection, name: str, platform_id: str | None = None) -> tuple[str, str]:
    """Create a platform and its first API key; return ``(platform_id, api_key)``."""
    platform_id = platform_id or f"{slugify(name)}-{secrets.token_hex(3)}"
    if not _PLATFORM_ID.match(platform_id):
        raise ApiError("invalid_request", "platform id must match ^[a-z0-9][a-z0-9-]{0,39}$")
    async with conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO platforms (platform_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING platform_id",
            platform_id,
            name,
        )
        if inserted is None:
            raise ApiError("platform_exists", f"platform {platform_id} exists")
        await LedgerStore(pool=None).open_accounts(platform_id, chart.platform_accounts(), conn=conn)  # type: ignore[arg-type]
        api_key = await issue_api_key(conn, platform_id)
    return platform_id, api_key


async def issue_api_key(conn: asyncpg.Connection, platform_id: str) -> str:
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO api_keys (platform_id, key_id, key_hash) VALUES ($1, $2, $3)",
        platform_id,
        key_id,
        hash_secret(secret),
    )
    return f"sl_{platform_id}_{key_id}_{secret}"


class ApiKeyVerifier:
    """Verifies bearer keys against the database, caching good answers for a few seconds."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 30.0) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self._cache: dict[bytes, tuple[str, float]] = {}

    async def verify(self, token: str) -> str:
        parsed = parse_api_key(token)
        if parsed is None:
            raise ApiError("unauthorized", "malformed API key")
        platform_id, key_id, secret = parsed
        digest = hash_secret(secret)
        cache_key = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(cache_key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        stored = await self.pool.fetchval(
            "SELECT key_hash FROM api_keys WHERE platform_id = $1 AND key_id = $2 AND revoked_at IS NULL",
            platform_id,
            key_id,
        )
        if stored is None or not hmac.compare_digest(bytes(stored), digest):
            raise ApiError("unauthorized", "unknown or revoked API key")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[cache_key] = (platform_id, now + self.ttl_s)
        return platform_id
