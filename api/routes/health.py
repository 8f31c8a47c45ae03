"""Liveness and readiness: is the database reachable (and DOKU, when configured)?"""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.datastructures import State

from api.metrics import METRICS
from api.problems import RETRY_AFTER_S
from api.services import Services
from ledger import errors


@get("/health", tags=["operations"], summary="Database (and DOKU) reachability")
async def health(state: State) -> Response[dict[str, Any]]:
    services: Services = state.services
    report: dict[str, Any] = {"status": "ok"}
    try:
        latency = await services.db.ping()
        report["database"] = {"ok": True, "latency_ms": round(latency * 1000, 2)}
    except errors.StoreUnavailable as exc:
        report["database"] = {"ok": False, "error": "database_unavailable", "detail": exc.detail}
        report["status"] = "unavailable"
    # DOKU being unreachable degrades the service (orders wait as send_failed, refunds stay
    # requested) but does not make it unhealthy: only the database does.
    report["doku"] = services.probe.last
    if not report["doku"].get("ok", False) and report["status"] == "ok":
        report["status"] = "degraded"
    if report["database"]["ok"]:
        return Response(report, status_code=200)
    return Response(report, status_code=503, headers={"Retry-After": RETRY_AFTER_S})


@get("/metrics", tags=["operations"], summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(state: State) -> str:
    return METRICS.render() + METRICS.render_batches(state.services.batcher)
