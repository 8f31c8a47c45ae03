"""Platforms (tenants) and their API keys.

Rule: an API key is shown once and stored only as SHA-256 (keys are 256-bit random, so a plain
hash is enough; no slow KDF needed), compared in constant time. The key carries its platform id, so
looking it up stays keyed by platform like every other query: ``sl_<platform_id>_<key_id>_<secret>``.

Keys are rotated through the API: a platform may hold several live keys (create the new one,
deploy it, revoke the old one); the last live key cannot be revoked, so a platform never locks
itself out (the CLI only ever makes a platform's first key). ``ApiKeyVerifier`` caches a good
answer for ``ttl_s`` (5 s by default): a revoked key stops working at once in the process that
revoked it, and within ``ttl_s`` in every other process.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from datetime import datetime

import msgspec

from ledger import chart, errors
from ledger.store.database import Database, UnitOfWork
from ledger.store.platforms import ApiKey

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


class IssuedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A new API key: the only time ``key`` is shown."""

    id: str
    name: str | None
    key: str
    created_at: datetime


async def issue_api_key(uow: UnitOfWork, platform_id: str, name: str | None = None) -> IssuedKey:
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    stored = await uow.platforms.add_key(platform_id, key_id, hash_secret(secret), name)
    return IssuedKey(id=key_id, name=name, key=f"sl_{platform_id}_{key_id}_{secret}", created_at=stored.created_at)


async def create_api_key(db: Database, platform_id: str, name: str | None = None) -> IssuedKey:
    return await db.transaction(lambda uow: issue_api_key(uow, platform_id, name))


async def list_api_keys(db: Database, platform_id: str) -> list[ApiKey]:
    return await db.read(lambda uow: uow.platforms.keys(platform_id))


async def revoke_api_key(db: Database, verifier: ApiKeyVerifier, platform_id: str, key_id: str) -> ApiKey:
    """Revoke a key (again: unchanged); ``LastApiKey`` when it is the platform's last live one."""

    async def revoke(uow: UnitOfWork) -> ApiKey:
        live = await uow.platforms.lock_live_keys(platform_id)
        if live == [key_id]:
            raise errors.LastApiKey("this is the platform's last live API key: create another one first")
        revoked = await uow.platforms.revoke_key(platform_id, key_id)
        if revoked is None:
            raise errors.ApiKeyNotFound(f"no API key {key_id!r}", key_id=key_id)
        return revoked

    revoked = await db.transaction(revoke)
    verifier.forget(platform_id, key_id)
    return revoked


def key_id_of(token: str) -> str | None:
    parsed = parse_api_key(token)
    return parsed[1] if parsed is not None else None


async def create_platform(db: Database, name: str, platform_id: str | None = None) -> tuple[str, str]:
    """Create a platform, its accounts and its first API key; return ``(platform_id, api_key)``."""
    chosen = platform_id or f"{slugify(name)}-{secrets.token_hex(3)}"
    if not PLATFORM_ID.match(chosen):
        raise errors.InvalidPlatformId("platform id must match ^[a-z0-9][a-z0-9-]{0,39}$")

    async def create(uow: UnitOfWork) -> str:
        if not await uow.platforms.insert(chosen, name):
            raise errors.PlatformExists(f"platform {chosen} exists")
        await uow.ledger.open_accounts(chosen, chart.platform_accounts())
        return (await issue_api_key(uow, chosen)).key

    return chosen, await db.transaction(create)


class ApiKeyVerifier:
    """Verifies bearer keys against the database, caching good answers for ``ttl_s`` seconds."""

    def __init__(self, db: Database, ttl_s: float = 5.0) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._cache: dict[bytes, tuple[str, float]] = {}
        self._by_key: dict[tuple[str, str], set[bytes]] = {}

    def forget(self, platform_id: str, key_id: str) -> None:
        """A revoked key is refused from now on in this process."""
        for cache_key in self._by_key.pop((platform_id, key_id), set()):
            self._cache.pop(cache_key, None)

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
            self._by_key.clear()
        self._cache[cache_key] = (platform_id, now + self.ttl_s)
        self._by_key.setdefault((platform_id, key_id), set()).add(cache_key)
        return platform_id
