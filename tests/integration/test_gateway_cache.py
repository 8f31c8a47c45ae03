"""The notification path's cache of DOKU accounts (Client-Id -> platform and secret), on real
PostgreSQL with a hand-driven clock: trusted for its TTL, emptied at once by a change made through
it, re-read after the TTL for a change made elsewhere (another worker), never caching the unknown."""

from __future__ import annotations

import os

from api.keyring import parse_keys
from ledger.service.gateways import GatewayCache, configure_gateway
from ledger.service.platforms import create_platform
from ledger.store import Database
from ledger.store.encryption import Keyring
from ledger.store.gateways import GatewaySettings


def _db(pool) -> Database:
    # gateway secrets are sealed at rest: the suite's key (tests/conftest.py) seals them
    return Database(pool, keyring=Keyring(parse_keys(os.environ["SPLITLEDGER_SECRETS_KEY"])))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_cache_trusts_an_account_for_its_ttl_and_sees_changes_made_elsewhere_after_it(pool):
    db = _db(pool)
    platform_id, _ = await create_platform(db, "Cache")
    await configure_gateway(db, platform_id, GatewaySettings(client_id="MCH-C1", secret_key="SK-1"))
    clock = Clock()
    cache = GatewayCache(db, ttl_s=2.0, clock=clock)
    elsewhere = GatewayCache(db, ttl_s=2.0, clock=clock)  # another worker's

    assert (await cache.for_client_id("MCH-C1")).secret_key.reveal() == "SK-1"
    await configure_gateway(db, platform_id, GatewaySettings(client_id="MCH-C1", secret_key="SK-2"), elsewhere)
    clock.now += 1.9
    assert (await cache.for_client_id("MCH-C1")).secret_key.reveal() == "SK-1"  # within its TTL
    clock.now += 0.2
    assert (await cache.for_client_id("MCH-C1")).secret_key.reveal() == "SK-2"

    await configure_gateway(db, platform_id, GatewaySettings(client_id="MCH-C1", secret_key="SK-3"), cache)
    assert (await cache.for_client_id("MCH-C1")).secret_key.reveal() == "SK-3"  # its own change, at once
    assert (await cache.refresh("MCH-C1")).platform_id == platform_id


async def test_an_unknown_client_id_is_not_cached(pool):
    db = _db(pool)
    cache = GatewayCache(db, ttl_s=3600.0, clock=Clock())
    assert await cache.for_client_id("MCH-LATER") is None
    platform_id, _ = await create_platform(db, "Later")
    await configure_gateway(db, platform_id, GatewaySettings(client_id="MCH-LATER", secret_key="SK"))  # elsewhere
    assert (await cache.for_client_id("MCH-LATER")).platform_id == platform_id
