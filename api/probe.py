"""Is DOKU reachable? Checked in the background so ``/health`` answers at once.

Any HTTP answer from a DOKU base URL counts as reachable (DOKU has no public health endpoint);
a connection error or a timeout does not. The URLs are the configured default and every
platform-specific base URL a DOKU client has been built for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from api.metrics import METRICS

log = logging.getLogger("splitledger.probe")


class DokuProbe:
    def __init__(self, urls: Callable[[], set[str]], interval_s: float = 30.0, timeout_s: float = 3.0) -> None:
        self.urls = urls
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.last: dict[str, Any] = {"ok": False, "checked_at": None, "endpoints": []}
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> dict[str, Any]:
        endpoints: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=self.timeout_s, trust_env=False) as client:
            for url in sorted(self.urls()):
                started = time.perf_counter()
                try:
                    response = await client.get(url)
                    endpoints.append(
                        {
                            "url": url,
                            "ok": True,
                            "status": response.status_code,
                            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                        }
                    )
                except httpx.HTTPError as exc:
                    endpoints.append({"url": url, "ok": False, "error": type(exc).__name__})
        self.last = {
            "ok": all(e["ok"] for e in endpoints),
            "checked_at": datetime.now(UTC).isoformat(),
            "endpoints": endpoints,
        }
        METRICS.count("doku_probes", "reachable" if self.last["ok"] else "unreachable")
        return self.last

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # a probe never takes the service down
                log.exception("DOKU probe failed")
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="doku-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
