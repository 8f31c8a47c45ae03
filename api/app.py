"""The litestar application: one factory, one lifespan that owns the pool and the HTTP clients.

Rule: handlers stay a few lines; they get the platform from the API key (every query is keyed by
it) and the shared ``Services`` from app state, and domain errors become problem+json in
``api.problems`` only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from litestar import Litestar, Request, Router
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from api import problems
from api.database import EmbeddedPostgres, create_pool, resolve_database_url
from api.logs import configure_logging
from api.middleware import RequestContextMiddleware
from api.platforms import ApiKeyVerifier
from api.settings import Settings, load_settings
from jenius.errors import JeniusError
from ledger.errors import LedgerError
from ledger.store import LedgerStore
from migrations.runner import migrate

log = logging.getLogger("splitledger.app")


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    ledger: LedgerStore
    verifier: ApiKeyVerifier
    extras: dict[str, Any] = field(default_factory=dict)


# What handlers declare to receive the shared services and the caller's platform.
ServicesDep = NamedDependency[Services]
PlatformId = NamedDependency[str]


def get_services(state: State) -> Services:
    return state.services


async def authenticate(request: Request, state: State) -> str:
    """Dependency: the platform id behind ``Authorization: Bearer <key>``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise problems.ApiError("unauthorized", "send Authorization: Bearer <api key>")
    return await state.services.verifier.verify(token.strip())


# Every domain error tree carries a stable ``code``; ``api.problems`` maps codes to statuses.
DOMAIN_ERRORS: tuple[type[Exception], ...] = (LedgerError, JeniusError, problems.ApiError)


def create_app(settings: Settings | None = None, *, extra_setup: Any = None) -> Litestar:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        url, embedded = resolve_database_url(settings.database_url)
        if settings.auto_migrate:
            conn = await asyncpg.connect(url)
            try:
                applied = await migrate(conn)
                if applied:
                    log.info("migrations applied", extra={"applied": ",".join(applied)})
            finally:
                await conn.close()
        pool = await create_pool(url, min_size=settings.pool_min, max_size=settings.pool_max)
        services = Services(settings=settings, pool=pool, ledger=LedgerStore(pool), verifier=ApiKeyVerifier(pool))
        app.state.services = services
        hooks = _service_hooks()
        try:
            for start, _ in hooks:
                await start(services)
            yield
        finally:
            for _, stop in reversed(hooks):
                await stop(services)
            await pool.close()
            if isinstance(embedded, EmbeddedPostgres):
                embedded.stop()

    from api.routes import routers

    v1 = Router(
        path="/v1",
        route_handlers=routers.v1_handlers(),
        dependencies={"platform_id": Provide(authenticate)},
        security=[{"apiKey": []}],
    )
    exception_handlers: dict[Any, Any] = {t: problems.handle_domain_error for t in DOMAIN_ERRORS}
    exception_handlers[HTTPException] = problems.handle_http_exception
    exception_handlers[Exception] = problems.handle_unexpected
    configure_logging(settings.log_json)
    return Litestar(
        route_handlers=[v1, *routers.public_handlers(settings)],
        lifespan=[lifespan],
        middleware=[RequestContextMiddleware],
        exception_handlers=exception_handlers,
        dependencies={"services": Provide(get_services, sync_to_thread=False)},
        openapi_config=OpenAPIConfig(
            title="splitledger",
            version="0.1.0",
            description=(
                "Split-settlement ledger for marketplaces paid through DOKU Jenius Pay. "
                "Authenticate with `Authorization: Bearer <api key>`; errors are RFC 9457 problem+json "
                "with a stable `code`."
            ),
            path="/docs",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
            components=Components(
                security_schemes={"apiKey": SecurityScheme(type="http", scheme="bearer", description="Platform API key")}
            ),
        ),
        state=State({"settings": settings}),
        debug=False,
    )


def _service_hooks() -> list[tuple[Any, Any]]:
    """Start/stop pairs of the background parts (DOKU clients, capture batcher, status checker)."""
    from api.runtime import hooks

    return hooks()


def app_from_env() -> Litestar:
    """Factory for ASGI servers (``api.app:app_from_env``)."""
    return create_app()
