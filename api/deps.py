"""What handlers declare to receive, provided once for the whole app (litestar-fullstack style)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from api.idempotency import provide_keyed
from api.problems import ApiError
from api.services import Services
from ledger.service.idempotency import Keyed

ServicesDep = NamedDependency[Services]
PlatformId = NamedDependency[str]
KeyedDep = NamedDependency[Keyed]
HttpRequest = Request[Any, Any, Any]


def get_services(state: State) -> Services:
    services: Services = state.services
    return services


async def authenticate(request: Request[Any, Any, Any], services: NamedDependency[Services]) -> str:
    """The platform id behind ``Authorization: Bearer <key>``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError("unauthorized", "send Authorization: Bearer <api key>")
    return await services.verifier.verify(token.strip())


async def keyed(
    request: Request[Any, Any, Any], services: NamedDependency[Services], platform_id: NamedDependency[str]
) -> Keyed:
    return await provide_keyed(request, services, platform_id)


APP_DEPENDENCIES = {"services": Provide(get_services, sync_to_thread=False)}
V1_DEPENDENCIES = {"platform_id": Provide(authenticate), "keyed": Provide(keyed)}
