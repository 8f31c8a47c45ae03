"""Background parts of the service, started and stopped by the app's lifespan, plus the same
operator tasks for the CLI (status checks, settlement import)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from api.batcher import CaptureBatcher
from api.gateways import GatewayClients
from api.metrics import METRICS

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


class DokuProbe:
    """Is DOKU reachable? Checked in the background so ``/health`` answers at once.

    Any HTTP answer from a DOKU base URL counts as reachable (DOKU has no public health endpoint);
    a connection error or a timeout does not. The URLs are the configured default and every
    platform-specific base URL a DOKU client has been built for.
    """

    def __init__(self, services: Any, interval_s: float = 30.0, timeout_s: float = 3.0) -> None:
        self.services = services
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.last: dict[str, Any] = {"ok": False, "checked_at": None, "endpoints": []}
        self._task: asyncio.Task[None] | None = None

    def urls(self) -> list[str]:
        found = {self.services.settings.doku_base_url}
        gateways = self.services.extras.get("gateways")
        if gateways is not None:
            found |= gateways.base_urls()
        return sorted(found)

    async def check(self) -> dict[str, Any]:
        endpoints = []
        async with httpx.AsyncClient(timeout=self.timeout_s, trust_env=False) as client:
            for url in self.urls():
                started = time.perf_counter()
                try:
                    response = await client.get(url)
                    endpoints.append({"url": url, "ok": True, "status": response.status_code,
                                      "latency_ms": round((time.perf_counter() - started) * 1000, 1)})
                except httpx.HTTPError as exc:
                    endpoints.append({"url": url, "ok": False, "error": type(exc).__name__})
        self.last = {"ok": all(e["ok"] for e in endpoints), "checked_at": datetime.now(UTC).isoformat(),
                     "endpoints": endpoints}
        METRICS.count("doku_probes", "reachable" if self.last["ok"] else "unreachable")
        return self.last

    async def __call__(self) -> dict[str, Any]:
        return self.last

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a probe never takes the service down
                log.exception("DOKU probe failed")
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="doku-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _start_probe(services: Any) -> None:
    probe = DokuProbe(services, interval_s=services.settings.doku_probe_interval_s)
    if services.settings.doku_probe_interval_s > 0:
        probe.start()
    services.extras["doku_probe"] = probe


async def _stop_probe(services: Any) -> None:
    await services.extras["doku_probe"].stop()


# What talking to DOKU and capturing need; the CLI's status check starts just these.
DOKU_HOOKS = [(_start_gateways, _stop_gateways), (_start_batcher, _stop_batcher)]


def hooks() -> list[tuple[Any, Any]]:
    return [*DOKU_HOOKS, (_start_status_checker, _stop_status_checker), (_start_probe, _stop_probe)]


async def run_status_check_once(url: str, *, older_than_s: int | None = None) -> int:
    from api.database import create_pool
    from api.payments import check_stale_orders
    from api.settings import load_settings

    from api.app import Services
    from api.platforms import ApiKeyVerifier
    from ledger.store import LedgerStore

    settings = load_settings()
    pool = await create_pool(url, min_size=1, max_size=4)
    services = Services(settings=settings, pool=pool, ledger=LedgerStore(pool), verifier=ApiKeyVerifier(pool))
    try:
        for start, _ in DOKU_HOOKS:
            await start(services)
        return await check_stale_orders(services, settings.status_check_after_s if older_than_s is None else older_than_s)
    finally:
        for _, stop in reversed(DOKU_HOOKS):
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
