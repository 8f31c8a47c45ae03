"""API keys under ``/v1/api-keys``: create (the key is in that answer only), list, revoke.

A platform may hold several live keys, so a key is rotated without downtime: create the new one,
deploy it, revoke the old one. The last live key cannot be revoked (409 ``last_api_key``). Creating
a key is not replayed under an ``Idempotency-Key``: its answer holds a secret that is never stored,
so a retry makes another key (list and revoke the one that was lost).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath

from api.bodies import decode_strict
from api.deps import PlatformId, ServicesDep
from ledger.service import platforms
from ledger.service.platforms import IssuedKey
from ledger.store.platforms import ApiKey


class ApiKeyIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, examples=["checkout-service 2026-11"])] | None = (
        None
    )


class ApiKeyOut(ApiKey, frozen=True, kw_only=True):
    current: bool  # the key this request was made with


class ApiKeyList(msgspec.Struct, frozen=True, kw_only=True):
    data: list[ApiKeyOut]


def _current_key_id(request: Request[Any, Any, Any]) -> str | None:
    _, _, token = request.headers.get("authorization", "").partition(" ")
    return platforms.key_id_of(token.strip())


class ApiKeyController(Controller):
    path = "/api-keys"
    tags = ["api keys"]

    @post("/", summary="Create another API key (shown once)", status_code=201)
    async def create(
        self, request: Request[Any, Any, Any], services: ServicesDep, platform_id: PlatformId
    ) -> IssuedKey:
        body = await request.body()
        data: ApiKeyIn = decode_strict(body, ApiKeyIn) if body.strip() else ApiKeyIn()
        return await platforms.create_api_key(services.db, platform_id, data.name)

    @get("/", summary="The platform's API keys, live and revoked (never their secrets)")
    async def list_(
        self, request: Request[Any, Any, Any], services: ServicesDep, platform_id: PlatformId
    ) -> ApiKeyList:
        current = _current_key_id(request)
        found = await platforms.list_api_keys(services.db, platform_id)
        return ApiKeyList(data=[ApiKeyOut(**msgspec.structs.asdict(k), current=k.id == current) for k in found])

    @delete("/{key_id:str}", summary="Revoke an API key (refused for the platform's last live key)")
    async def revoke(self, services: ServicesDep, platform_id: PlatformId, key_id: FromPath[str]) -> None:
        await platforms.revoke_api_key(services.db, services.verifier, platform_id, key_id)


def key_handlers() -> list[Any]:
    return [ApiKeyController]
