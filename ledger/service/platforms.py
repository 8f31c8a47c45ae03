"""Platforms (tenants) and their API keys.

Rule: an API key is shown once and stored only as SHA-256 (keys are 256-bit random, so a plain
hash is enough; no slow KDF needed), compared in constant time. The key carries its platform id, so
looking it up stays keyed by platform like every other query: ``sl_<platform_id>_<key_id>_<secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

from ledger import chart, errors
from ledger.store.database import Database, UnitOfWork

PLATFORM_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "platform"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_api_key(token: str) -> tuple[str, str, str] | None:
    parts = token.split("_", 3)
    if len(parts) != 4 or parts[0] != "sl" or not PLATFORM_ID.match(parts[1]) or not parts[2] or not parts[3]:
        return None
    return parts[1], parts[2], parts[3]


async def issue_api_key(uow: UnitOfWork, platform_id: str) -> str:
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    await uow.platforms.add_key(platform_id, key_id, hash_secret(secret))
    return f"sl_{platform_id}_{key_id}_{secret}"


async def create_platform(db: Database, name: str, platform_id: str | None = None) -> tuple[str, str]:
    """Create a platform, its accounts and its first API key; return ``(platform_id, api_key)``."""
    chosen = platform_id or f"{slugify(name)}-{secrets.token_hex(3)}"
    if not PLATFORM_ID.match(chosen):
        raise errors.InvalidPlatformId("platform id must match ^[a-z0-9][a-z0-9-]{0,39}$")

    async def create(uow: UnitOfWork) -> str:
        if not await uow.platforms.insert(chosen, name):
            raise errors.PlatformExists(f"platform {chosen} exists")
        await uow.ledger.open_accounts(chosen, chart.platform_accounts())
        return await issue_api_key(uow, chosen)

    return chosen, await db.transaction(create)


class ApiKeyVerifier:
    """Verifies bearer keys against the database, caching good answers for a few seconds."""

    def __init__(self, db: Database, ttl_s: float = 30.0) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._cache: dict[bytes, tuple[str, float]] = {}

    async def verify(self, token: str) -> str:
        parsed = parse_api_key(token)
        if parsed is None:
            raise errors.Unauthorized("malformed API key")
        platform_id, key_id, secret = parsed
        cache_key = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(cache_key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        stored = await self.db.read(lambda uow: uow.platforms.key_hash(platform_id, key_id))
        if stored is None or not hmac.compare_digest(stored, hash_secret(secret)):
            raise errors.Unauthorized("unknown or revoked API key")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[cache_key] = (platform_id, now + self.ttl_s)
        return platform_id
