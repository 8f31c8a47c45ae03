"""Liveness and readiness: is the database reachable (and DOKU, when configured)?"""

from __future__ import annotations

import time

from litestar import Response, get
from litestar.datastructures import State

from api.metrics import METRICS


@get("/health", tags=["operations"], summary="Database (and DOKU) reachability")
async def health(state: State) -> Response:
    services = state.services
    report: dict = {"status": "ok"}
    started = time.perf_counter()
    try:
        async with services.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
        report["database"] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        report["database"] = {"ok": False, "error": type(exc).__name__}
        report["status"] = "degraded"
    probe = services.extras.get("doku_probe")
    if probe is not None:
        # DOKU being unreachable degrades the service (orders wait as send_failed, refunds stay
        # requested) but does not make it unhealthy: only the database does.
        report["doku"] = await probe()
        if not report["doku"].get("ok", False):
            report["status"] = "degraded" if report["status"] == "ok" else report["status"]
    status = 200 if report["database"]["ok"] else 503
    return Response(report, status_code=status)


@get("/metrics", tags=["operations"], summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics() -> str:
    return METRICS.render()
