"""Webhook endpoints under ``/v1/webhook-endpoints``: register (the secret is in that answer only),
list, delete, and each endpoint's delivery log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from api.bodies import Strict
from api.deps import HttpRequest, KeyedDep, PlatformId, ServicesDep
from api.idempotency import answer
from api.problems import ApiError
from api.routes.events import check_limit
from ledger.service import webhooks
from ledger.service.webhooks import EndpointDraft
from ledger.webhooks import CreatedEndpoint, Delivery, WebhookEndpoint


class EndpointIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048, examples=["https://toko.example/hooks"])]
    events: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
        msgspec.Meta(min_length=1, max_length=32, examples=[["order.captured", "refund.succeeded"], ["*"]]),
    ]


class EndpointList(msgspec.Struct, frozen=True, kw_only=True):
    data: list[WebhookEndpoint]


class DeliveryPage(msgspec.Struct, frozen=True, kw_only=True):
    data: list[Delivery]
    has_more: bool
    next_cursor: str | None


class WebhookEndpointController(Controller):
    path = "/webhook-endpoints"
    tags = ["webhooks"]

    @post(
        "/",
        summary='Register an endpoint for event types (or ["*"]); the signing secret is shown once',
        status_code=201,
        dto=Strict[EndpointIn],
        return_dto=None,
    )
    async def create(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        data: JSONBody[EndpointIn],
    ) -> Response[CreatedEndpoint]:
        draft = EndpointDraft(url=data.url, events=data.events)
        return await answer(
            request,
            keyed,
            lambda: webhooks.create_endpoint(
                services.db, keyed, platform_id, draft, allow_loopback=services.settings.webhooks_allow_loopback
            ),
        )

    @get("/", summary="The platform's webhook endpoints (never their secrets)")
    async def list_(self, services: ServicesDep, platform_id: PlatformId) -> EndpointList:
        return EndpointList(data=await webhooks.list_endpoints(services.db, platform_id))

    @get("/{endpoint_id:str}", summary="One webhook endpoint")
    async def get_one(
        self, services: ServicesDep, platform_id: PlatformId, endpoint_id: FromPath[str]
    ) -> WebhookEndpoint:
        return await webhooks.get_endpoint(services.db, platform_id, endpoint_id)

    @delete("/{endpoint_id:str}", summary="Delete an endpoint (what it still had to receive is cancelled)")
    async def delete_(self, services: ServicesDep, platform_id: PlatformId, endpoint_id: FromPath[str]) -> None:
        await webhooks.delete_endpoint(services.db, platform_id, endpoint_id)

    @get("/{endpoint_id:str}/deliveries", summary="The endpoint's delivery log, newest first, with every attempt")
    async def deliveries(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        endpoint_id: FromPath[str],
        cursor: FromQuery[str | None] = None,
        status: FromQuery[Literal["pending", "delivered", "failed", "cancelled"] | None] = None,
        limit: FromQuery[int] = 50,
    ) -> DeliveryPage:
        before = _delivery_cursor(cursor)
        found = await webhooks.list_deliveries(
            services.db, platform_id, endpoint_id, before=before, status=status, limit=check_limit(limit) + 1
        )
        page = found[:limit]
        more = len(found) > limit
        return DeliveryPage(data=page, has_more=more, next_cursor=str(page[-1].id) if more else None)


def _delivery_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18:
        raise ApiError("invalid_request", "bad cursor: pass the next_cursor of a page")
    return int(cursor)


def webhook_handlers() -> list[Any]:
    return [WebhookEndpointController]
