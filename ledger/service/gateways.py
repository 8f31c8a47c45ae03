"""A platform's DOKU merchant account: credentials, DOKU's fee and the platform's default commission.

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


async def configure_gateway(
    db: Database, platform_id: str, settings: GatewaySettings, cache: GatewayCache | None = None
) -> Gateway:
    gateway = await db.transaction(lambda uow: uow.gateways.configure(platform_id, settings))
    if cache is not None:
        cache.invalidate()
    return gateway


async def get_gateway(db: Database, platform_id: str) -> Gateway:
    return await db.read(lambda uow: uow.gateways.get(platform_id))


async def gateway_for_client_id(db: Database, client_id: str) -> Gateway | None:
    return await db.read(lambda uow: uow.gateways.for_client_id(client_id))
