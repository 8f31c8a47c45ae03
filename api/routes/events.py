"""The event feed (``GET /v1/events``) and manual redelivery (``POST /v1/events/{id}/redeliver``).

The feed answers ``{"data": [...], "has_more": bool, "next_cursor": "..."}``; each event is sent as
the bytes stored when it was written (the same bytes every webhook delivery carries). Page on with
``after=<next_cursor>``; ``next_cursor`` is given on every page, also the last one, so a consumer
polls the tail with it. Paging from any cursor returns every event exactly once (docs/events.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter

from api.bodies import decode_strict
from api.deps import HttpRequest, KeyedDep, PlatformId, ServicesDep
from api.idempotency import answer
from api.problems import ApiError
from api.routes.pages import MAX_PAGE
from ledger.events import Event
from ledger.service import events
from ledger.webhooks import Delivery

_encode = msgspec.json.Encoder().encode


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    """What the feed answers (its events are sent as stored: exactly what webhooks deliver)."""

    data: list[Event]
    has_more: bool
    next_cursor: str


class _RawPage(msgspec.Struct, frozen=True, kw_only=True):
    data: list[msgspec.Raw]
    has_more: bool
    next_cursor: str


class RedeliverIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    endpoint_id: str | None = None  # only this endpoint (default: every enabled endpoint subscribed)


class Redelivery(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    deliveries: list[Delivery]


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError("invalid_request", f"limit must be 1..{MAX_PAGE}")
    return limit


class EventController(Controller):
    path = "/events"
    tags = ["events"]

    @get(
        "/",
        summary="The platform's events in commit order, gapless: page with after=<next_cursor>",
        description=(
            "Every event exactly once, oldest first, even while transactions commit concurrently. "
            "`after` is a `next_cursor` (or an event id); `type` keeps one event type."
        ),
        responses={200: ResponseSpec(data_container=EventPage, description="One page of the feed")},
    )
    async def list_(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        after: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
        type_: Annotated[str | None, QueryParameter(name="type")] = None,
    ) -> Response[bytes]:
        page = await events.list_events(services.db, platform_id, after=after, limit=check_limit(limit), type_=type_)
        body = _RawPage(
            data=[msgspec.Raw(e.body) for e in page.events], has_more=page.has_more, next_cursor=page.next_cursor
        )
        return Response(_encode(body), media_type="application/json")

    @get("/{event_id:str}", summary="One event", responses={200: ResponseSpec(data_container=Event)})
    async def get_one(self, services: ServicesDep, platform_id: PlatformId, event_id: FromPath[str]) -> Response[bytes]:
        found = await events.get_event(services.db, platform_id, event_id)
        return Response(found.body, media_type="application/json")

    @post(
        "/{event_id:str}/redeliver",
        summary="Deliver an event again to the endpoints subscribed to it (or to one: {endpoint_id})",
        status_code=202,
    )
    async def redeliver(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        event_id: FromPath[str],
    ) -> Response[Redelivery]:
        body = await request.body()
        data: RedeliverIn = decode_strict(body, RedeliverIn) if body.strip() else RedeliverIn()

        async def run() -> Redelivery:
            await keyed.check()
            found = await events.redeliver(services.db, platform_id, event_id, data.endpoint_id)
            result = Redelivery(event_id=event_id, deliveries=found)
            return await keyed.finish(lambda uow: _same(result))

        return await answer(request, keyed, run)


async def _same(value: Any) -> Any:
    return value


def event_handlers() -> list[Any]:
    return [EventController]
