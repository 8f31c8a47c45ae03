"""The service's parts, typed and built once by the app's lifespan (or by a CLI command).

Rule: everything a handler or a background task needs is a field here; nothing is looked up by name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from api.doku import DokuGateway
from api.metrics import METRICS
from api.probe import DokuProbe
from api.sealing import load_signer
from api.settings import Settings
from api.webhook_sender import HttpWebhookSender
from ledger.service.capture import CaptureBatcher
from ledger.service.faults import Faults
from ledger.service.gateways import GatewayCache
from ledger.service.groupcommit import GroupCommitter
from ledger.service.idempotency import Answer, Keyed
from ledger.service.platforms import ApiKeyVerifier
from ledger.service.sealer import Sealer, Signer
from ledger.service.webhooks import RelaySettings, WebhookRelay
from ledger.store import Database, LedgerStore
from ledger.store.database import create_pool
from ledger.store.encryption import Keyring

log = logging.getLogger("splitledger.services")


@dataclass
class Background:
    """Tasks started by requests (a status check after a stale notification) and loops of the service."""

    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, work: Callable[[], Awaitable[None]], name: str) -> None:
        async def run() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task failed", extra={"task": name})

        task = asyncio.create_task(run(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


@dataclass
class Services:
    settings: Settings
    db: Database
    verifier: ApiKeyVerifier
    doku: DokuGateway
    batcher: CaptureBatcher
    group_commit: GroupCommitter
    probe: DokuProbe
    faults: Faults
    signer: Signer
    sealer: Sealer
    webhook_sender: HttpWebhookSender
    relay: WebhookRelay
    gateway_cache: GatewayCache
    background: Background = field(default_factory=Background)

    @property
    def ledger(self) -> LedgerStore:
        return self.db.ledger

    def plain(self, platform_id: str) -> Keyed:
        """A ``Keyed`` without a key, for work no client asked for (background checks, the CLI)."""
        return Keyed(self.db, platform_id, None, b"", _no_answer, faults=self.faults)


def _no_answer(_: object) -> Answer:
    return Answer(status=200, body=b"")


def relay_settings(settings: Settings) -> RelaySettings:
    return RelaySettings(
        backoff_scale=settings.webhook_backoff_scale,
        lease_s=max(settings.webhook_lease_s, settings.webhook_timeout_s * 2),
        concurrency=settings.webhook_concurrency,
        poll_interval_s=settings.webhook_poll_interval_s,
    )


async def open_services(
    settings: Settings,
    url: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    faults: Faults | None = None,
    keyring: Keyring | None = None,
) -> Services:
    """The service's parts; ``keyring`` opens DOKU secrets (without one, reading a gateway fails)."""
    pool = await create_pool(url, min_size=settings.pool_min, max_size=settings.pool_max)
    db = Database(pool, acquire_timeout_s=settings.db_acquire_timeout_s, keyring=keyring)
    doku = DokuGateway(settings, transport=transport)
    signer = load_signer(settings)
    faults = faults or Faults.from_spec(settings.faults, settings.fault_mode)
    sender = HttpWebhookSender(timeout_s=settings.webhook_timeout_s)
    services = Services(
        settings=settings,
        db=db,
        verifier=ApiKeyVerifier(db, ttl_s=settings.api_key_cache_ttl_s),
        doku=doku,
        batcher=CaptureBatcher(
            db,
            max_batch=settings.capture_max_batch,
            in_flight=settings.capture_in_flight,
            faults=faults,
            observe=METRICS.observe_batch,
        ),
        group_commit=GroupCommitter(
            db,
            max_batch=settings.group_commit_max_batch,
            in_flight=settings.group_commit_in_flight,
            observe=METRICS.observe_group,
        ),
        probe=DokuProbe(doku.base_urls, interval_s=settings.doku_probe_interval_s),
        signer=signer,
        sealer=Sealer(db, signer, interval_s=settings.sealer_interval_s, max_entries=settings.sealer_block_max),
        faults=faults,
        webhook_sender=sender,
        relay=WebhookRelay(db, sender, relay_settings(settings), faults=faults),
        gateway_cache=GatewayCache(db, ttl_s=settings.gateway_cache_ttl_s),
    )
    await services.batcher.start()
    await services.group_commit.start()
    return services


async def close_services(services: Services) -> None:
    await services.background.stop()
    await services.probe.stop()
    await services.batcher.stop()
    await services.group_commit.stop()
    await services.webhook_sender.aclose()
    await services.doku.aclose()
    await services.db.pool.close()
