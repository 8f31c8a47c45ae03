"""Background parts of the service, started and stopped by the app's lifespan, plus the same
operator tasks for the CLI (status checks, settlement import)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from api.batcher import CaptureBatcher
from api.gateways import GatewayClients

log = logging.getLogger("splitledger.runtime")


async def _start_gateways(services: Any) -> None:
    services.extras["gateways"] = GatewayClients(services.settings, transport=services.extras.get("doku_transport"))


async def _stop_gateways(services: Any) -> None:
    background = list(services.extras.pop("background", ()))
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await services.extras["gateways"].aclose()


async def _start_batcher(services: Any) -> None:
    batcher = CaptureBatcher(services.ledger)
    await batcher.start()
    services.extras["batcher"] = batcher


async def _stop_batcher(services: Any) -> None:
    await services.extras["batcher"].stop()


async def _status_loop(services: Any) -> None:
    from api.payments import check_stale_orders

    settings = services.settings
    while True:
        await asyncio.sleep(settings.status_check_interval_s)
        try:
            checked = await check_stale_orders(services, settings.status_check_after_s)
            if checked:
                log.info("status fallback", extra={"checked": checked})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("status fallback failed; will try again")


async def _start_status_checker(services: Any) -> None:
    if services.settings.status_check_enabled:
        services.extras["status_task"] = asyncio.create_task(_status_loop(services), name="status-checker")


async def _stop_status_checker(services: Any) -> None:
    task = services.extras.pop("status_task", None)
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


def hooks() -> list[tuple[Any, Any]]:
    return [
        (_start_gateways, _stop_gateways),
        (_start_batcher, _stop_batcher),
        (_start_status_checker, _stop_status_checker),
    ]


class _CliServices:
    """The parts of ``Services`` the CLI tasks need, without the HTTP app."""

    def __init__(self, pool: Any, settings: Any) -> None:
        from ledger.store import LedgerStore

        self.pool = pool
        self.settings = settings
        self.ledger = LedgerStore(pool)
        self.extras: dict[str, Any] = {}


async def run_status_check_once(url: str, *, older_than_s: int | None = None) -> int:
    from api.database import create_pool
    from api.payments import check_stale_orders
    from api.settings import load_settings

    settings = load_settings()
    pool = await create_pool(url, min_size=1, max_size=4)
    services = _CliServices(pool, settings)
    try:
        for start, _ in hooks()[:2]:
            await start(services)
        return await check_stale_orders(services, settings.status_check_after_s if older_than_s is None else older_than_s)
    finally:
        for _, stop in reversed(hooks()[:2]):
            await stop(services)
        await pool.close()


async def import_settlement_file(url: str, platform_id: str, path: str, *, mapping: str | None, progress: bool) -> str:
    import sys

    from api.database import create_pool
    from ledger.settlement import import_settlement_report, mapping_from_spec
    from ledger.store import LedgerStore

    content = Path(path).read_bytes()
    pool = await create_pool(url, min_size=1, max_size=4)

    def show(done: int, total: int) -> None:
        if progress:
            width = 30
            filled = width * done // max(total, 1)
            sys.stderr.write(f"\rimporting [{'#' * filled}{'.' * (width - filled)}] {done}/{total} lines")
            sys.stderr.flush()

    try:
        summary = await import_settlement_report(
            pool, LedgerStore(pool), platform_id, source_name=Path(path).name, content=content,
            mapping=mapping_from_spec(mapping), progress=show,
        )
    finally:
        await pool.close()
    if progress:
        sys.stderr.write("\n")
    return str(summary)
