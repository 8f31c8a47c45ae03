"""Background loops of the service (status fallback, idempotency-key pruning, the webhook relay, the
DOKU probe) and the operator tasks the CLI runs with the same ``Services``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.services import Services, close_services, open_services
from api.settings import Settings, load_settings
from ledger.service import orders
from ledger.service import settlement as settlement_service
from ledger.settlement import ImportSummary
from ledger.settlement_report import mapping_from_spec
from ledger.store.database import UnitOfWork
from ledger.store.encryption import Keyring

log = logging.getLogger("splitledger.runtime")


async def check_stale_orders(services: Services, older_than_s: int) -> int:
    return await orders.check_stale_orders(
        services.db,
        services.doku,
        services.batcher,
        before=datetime.now(UTC) - timedelta(seconds=older_than_s),
        plain=services.plain(""),
    )


async def prune_keys(services: Services) -> int:
    before = datetime.now(UTC) - timedelta(hours=services.settings.idempotency_retention_h)

    async def prune(uow: UnitOfWork) -> int:
        return sum([await uow.keys.prune(p, before) for p in await uow.platforms.ids()])

    return await services.db.transaction(prune)


async def _every(seconds: float, name: str, work: object) -> None:
    assert callable(work)
    while True:
        await asyncio.sleep(seconds)
        try:
            done = await work()
            if done:
                log.info(name, extra={"count": done})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; will try again", name)


def start_background(services: Services) -> None:
    settings = services.settings
    if settings.status_check_enabled:
        services.background.spawn(
            lambda: _every(
                settings.status_check_interval_s,
                "status fallback",
                lambda: check_stale_orders(services, settings.status_check_after_s),
            ),
            "status-checker",
        )
    if settings.idempotency_prune_interval_s > 0:
        services.background.spawn(
            lambda: _every(
                settings.idempotency_prune_interval_s, "idempotency keys pruned", lambda: prune_keys(services)
            ),
            "key-pruner",
        )
    if settings.sealer_interval_s > 0:
        services.background.spawn(services.sealer.run, "sealer")
    if settings.webhook_relay_enabled:
        services.background.spawn(services.relay.run, "webhook-relay")
    services.probe.start()


async def run_status_check_once(url: str, *, older_than_s: int | None = None, keyring: Keyring | None = None) -> int:
    settings = load_settings()
    services = await open_services(settings, url, keyring=keyring)
    try:
        return await check_stale_orders(
            services, settings.status_check_after_s if older_than_s is None else older_than_s
        )
    finally:
        await close_services(services)


async def import_settlement_file(
    url: str,
    platform_id: str,
    path: str,
    *,
    mapping: str | None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import one report file for a platform (``PlatformNotFound`` when there is no such platform)."""
    content = await asyncio.to_thread(Path(path).read_bytes)
    chosen = mapping_from_spec(mapping)  # a bad mapping is refused before anything is opened
    services = await open_services(Settings(pool_min=1, pool_max=2), url)
    try:
        if platform_id not in await services.db.read(lambda uow: uow.platforms.ids()):
            raise PlatformNotFound(platform_id)
        return await settlement_service.import_settlement_report(
            services.db, platform_id, source_name=Path(path).name, content=content, mapping=chosen, progress=progress
        )
    finally:
        await close_services(services)


class PlatformNotFound(Exception):
    """The CLI was given a platform id that does not exist."""

    def __init__(self, platform_id: str) -> None:
        super().__init__(f"no platform {platform_id!r}")
        self.platform_id = platform_id
