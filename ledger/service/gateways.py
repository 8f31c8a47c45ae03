"""A platform's DOKU merchant account: credentials, DOKU's fee and the platform's default commission.

Rule: a base URL or refund path that could send the platform's signed requests anywhere but DOKU
(``ledger.gateway_urls``) is refused before anything is stored; the Secret Key is stored encrypted
(``ledger.store.gateways``). ``encrypt_secrets``/``reencrypt_secrets`` are the start-up and rotation steps.

The notification path looks the account up by DOKU's Client-Id on every delivery; ``GatewayCache``
keeps those lookups off the database. Rules (the cache may never refuse a good notification, and
never trusts an old secret for long):
* an entry lives ``ttl_s`` seconds: a change made through another worker is seen within that time;
* a change made through this worker (``configure_gateway(..., cache=…)``) empties it at once;
* a notification whose signature fails against a cached secret is checked once more against a
  fresh read (``refresh``), so a secret changed moments ago through another worker is not refused;
* an unknown Client-Id is not cached (a platform configured a moment ago is found at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ledger import errors
from ledger.gateway_urls import base_url_problem, refund_path_problem
from ledger.store.database import Database
from ledger.store.gateways import Gateway, GatewaySettings


class GatewayCache:
    def __init__(self, db: Database, *, ttl_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[Gateway, float]] = {}

    async def for_client_id(self, client_id: str) -> Gateway | None:
        cached = self._entries.get(client_id)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        return await self.refresh(client_id)

    async def refresh(self, client_id: str) -> Gateway | None:
        """Read the account behind ``client_id`` from the database, and remember it."""
        gateway = await gateway_for_client_id(self.db, client_id)
        if gateway is None:
            self._entries.pop(client_id, None)
            return None
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[client_id] = (gateway, self._clock() + self.ttl_s)
        return gateway

    def invalidate(self) -> None:
        self._entries.clear()


def check_gateway_urls(settings: GatewaySettings, *, allow_loopback_http: bool) -> None:
    if settings.base_url is not None:
        problem = base_url_problem(settings.base_url, allow_loopback_http=allow_loopback_http)
        if problem is not None:
            raise errors.InvalidBaseUrl(f"base_url: {problem}")
    if settings.refund_path is not None:
        problem = refund_path_problem(settings.refund_path)
        if problem is not None:
            raise errors.InvalidRefundPath(f"refund_path: {problem}")


async def configure_gateway(
    db: Database,
    platform_id: str,
    settings: GatewaySettings,
    cache: GatewayCache | None = None,
    *,
    allow_loopback_http: bool = False,
) -> Gateway:
    check_gateway_urls(settings, allow_loopback_http=allow_loopback_http)
    gateway = await db.transaction(lambda uow: uow.gateways.configure(platform_id, settings))
    if cache is not None:
        cache.invalidate()
    return gateway


async def get_gateway(db: Database, platform_id: str) -> Gateway:
    return await db.read(lambda uow: uow.gateways.get(platform_id))


async def gateway_for_client_id(db: Database, client_id: str) -> Gateway | None:
    return await db.read(lambda uow: uow.gateways.for_client_id(client_id))


async def encrypt_secrets(db: Database) -> int:
    """Encrypt the secrets still stored in plaintext; refuse to go on if any encrypted one does not open."""
    encrypted = await db.transaction(lambda uow: uow.gateways.encrypt_plaintext())
    unreadable = await db.read(lambda uow: uow.gateways.unreadable())
    if unreadable:
        raise errors.SecretUnreadable(
            f"the secrets key does not open the DOKU Secret Key of {len(unreadable)} platform(s) "
            f"({', '.join(unreadable[:5])}): start with the key they were encrypted under",
            platforms=unreadable,
        )
    return encrypted


async def reencrypt_secrets(db: Database) -> int:
    """Re-encrypt every secret under the keyring's first key (key rotation); the count re-encrypted."""
    return await db.transaction(lambda uow: uow.gateways.reencrypt())
