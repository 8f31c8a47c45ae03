"""Liveness and readiness: is the database reachable (and DOKU, when configured)? And the metrics,
for whoever holds the metrics token."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State

from api.metrics import METRICS
from api.problems import RETRY_AFTER_S, ApiError
from api.services import Services
from api.settings import Settings
from ledger import errors
from ledger.service.sealer import sealer_lag


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
        lag = services.sealer.lag or await sealer_lag(services.db)
        report["sealer"] = {
            "running": services.settings.sealer_interval_s > 0,
            "unsealed_entries": lag.unsealed_entries,
            "seconds_behind": lag.seconds_behind,
        }
        METRICS.gauge("sealer_unsealed_entries", lag.unsealed_entries)
        METRICS.gauge("sealer_seconds_behind", lag.seconds_behind)
        return Response(report, status_code=200)
    return Response(report, status_code=503, headers={"Retry-After": RETRY_AFTER_S})


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics of the whole service (Authorization: Bearer <SPLITLEDGER_METRICS_TOKEN>)",
    media_type="text/plain; version=0.0.4",
    security=[{"metricsToken": []}],
)
async def metrics(request: Request[Any, Any, Any], state: State) -> str:
    settings: Settings = state.settings
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = settings.metrics_token.encode()
    given = token.strip().encode("utf-8", "surrogateescape")
    if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
        raise ApiError("unauthorized", "/metrics needs Authorization: Bearer <SPLITLEDGER_METRICS_TOKEN>")
    services: Services = state.services
    METRICS.gauge("capture_queue_depth", services.batcher.depth())
    return METRICS.render()
