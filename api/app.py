"""The litestar application: one factory, one lifespan that owns the ``Services``.

Rule: handlers stay a few lines: decode (strictly, ``api.bodies``) → one use case → encode. They
receive the platform from the API key (every query is keyed by it), the typed ``Services`` and the
request's ``Keyed`` from ``api.deps``; domain errors become problem+json in ``api.problems`` only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import asyncpg
import httpx
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from api import problems
from api.bodies import MAX_DEPTH
from api.database import EmbeddedPostgres, resolve_database_url
from api.deps import APP_DEPENDENCIES, V1_DEPENDENCIES
from api.guards import Limits, guard
from api.keyring import load_keyring
from api.logs import configure_logging
from api.metrics import configure_metrics, worker_exited
from api.middleware import RequestContextMiddleware
from api.openapi import OfflineSwagger, TruthfulJson, docs_assets
from api.routes.routers import public_handlers, v1_handlers
from api.runtime import start_background
from api.services import close_services, open_services
from api.settings import Settings, load_settings
from ledger.gateway_urls import base_url_problem, refund_path_problem
from ledger.service.faults import Faults
from ledger.service.gateways import encrypt_secrets
from migrations.runner import migrate

log = logging.getLogger("splitledger.app")


def splitledger_version() -> str:
    try:
        return package_version("splitledger")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(
    settings: Settings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    faults: Faults | None = None,
) -> Litestar:
    """The app; ``transport`` replaces DOKU's HTTP (tests), ``faults`` arms fault injection (tests)."""
    settings = settings or load_settings()
    check_doku_settings(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        url, embedded = resolve_database_url(settings.database_url)
        try:
            keyring = load_keyring(settings, embedded)
            if settings.auto_migrate:
                conn = await asyncpg.connect(url)
                try:
                    applied = await migrate(conn)
                    if applied:
                        log.info("migrations applied", extra={"applied": ",".join(applied)})
                finally:
                    await conn.close()
            services = await open_services(settings, url, transport=transport, faults=faults, keyring=keyring)
        except BaseException:
            if isinstance(embedded, EmbeddedPostgres):
                embedded.stop()
            raise
        try:
            encrypted = await encrypt_secrets(services.db)
            if encrypted:
                log.info("DOKU secrets encrypted", extra={"count": encrypted})
            app.state.services = services
            start_background(services)
            yield
        finally:
            await close_services(services)
            worker_exited()
            if isinstance(embedded, EmbeddedPostgres):
                embedded.stop()

    v1 = Router(
        path="/v1",
        route_handlers=v1_handlers(),
        dependencies=V1_DEPENDENCIES,
        security=[{"apiKey": []}],
    )
    exception_handlers: dict[Any, Any] = {t: problems.handle_domain_error for t in problems.DOMAIN_ERRORS}
    exception_handlers[HTTPException] = problems.handle_http_exception
    exception_handlers[Exception] = problems.handle_unexpected
    configure_logging(settings.log_json)
    configure_metrics()
    return Litestar(
        route_handlers=[v1, *public_handlers(settings), docs_assets()],
        lifespan=[lifespan],
        middleware=[DefineMiddleware(RequestContextMiddleware)],
        before_request=guard,
        exception_handlers=exception_handlers,
        dependencies=APP_DEPENDENCIES,
        openapi_config=OpenAPIConfig(
            title="splitledger",
            version=splitledger_version(),
            description=(
                "Split-settlement ledger for marketplaces paid through DOKU Jenius Pay. "
                "Authenticate with `Authorization: Bearer <api key>`; errors are RFC 9457 problem+json "
                "with a stable `code`. Money-moving POSTs (refunds, payouts) require an `Idempotency-Key`.\n\n"
                "Input is strict: a body is `application/json` in UTF-8 (else 415 `unsupported_media_type`), "
                f"nested at most {MAX_DEPTH} levels (`nesting_too_deep`); a field the endpoint does not know is "
                "refused with 422 `unknown_field` and its path in `errors[].path` (e.g. `$.comission_bps`); "
                "values of the wrong type or out of bounds are 422 `invalid_request` with their path; text with "
                "control characters (other than tab, CR, LF) or invalid UTF-8, in a body or the URL, is 422 "
                "`invalid_text`; dates lie between 1970-01-01 and 9998-12-31. Requests beyond the rate limit of "
                "an API key are 429 `rate_limited` with `Retry-After`."
            ),
            path="/docs",
            render_plugins=[OfflineSwagger(), TruthfulJson()],
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(type="http", scheme="bearer", description="Platform API key"),
                    "metricsToken": SecurityScheme(
                        type="http", scheme="bearer", description="SPLITLEDGER_METRICS_TOKEN, for /metrics only"
                    ),
                }
            ),
        ),
        state=State({"settings": settings, "limits": Limits(settings)}),
        debug=False,
    )


def check_doku_settings(settings: Settings) -> None:
    """The default DOKU base URL and refund path obey the rules a platform's own do."""
    problem = base_url_problem(settings.doku_base_url, allow_loopback_http=settings.doku_allow_loopback_http)
    if problem is not None:
        raise ValueError(
            f"SPLITLEDGER_DOKU_BASE_URL {settings.doku_base_url!r}: {problem} "
            "(a loopback DOKU sandbox needs SPLITLEDGER_DOKU_ALLOW_LOOPBACK_HTTP=true)"
        )
    problem = refund_path_problem(settings.doku_refund_path)
    if problem is not None:
        raise ValueError(f"SPLITLEDGER_DOKU_REFUND_PATH {settings.doku_refund_path!r}: {problem}")


def app_from_env() -> Litestar:
    """Factory for ASGI servers (``api.app:app_from_env``)."""
    return create_app()
