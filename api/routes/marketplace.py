"""The marketplace API under ``/v1``: platform gateway settings, sellers, orders and refunds.

Every POST goes through ``idempotent`` (``Idempotency-Key``); every handler is scoped to the
platform of the API key; domain errors become problem+json in ``api.problems``.
"""

from __future__ import annotations

import base64
from datetime import datetime
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from api import payments
from api.app import PlatformId, ServicesDep
from api.gateways import GatewayOut, configure_gateway, get_gateway
from api.idempotency import idempotent
from api.problems import ApiError
from api.schemas import (
    GatewayIn,
    OrderIn,
    OrderOut,
    OrderPage,
    RefundIn,
    RefundOut,
    SellerIn,
    strict,
)
from ledger import orders, refunds, sellers
from ledger.sellers import Seller

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode


def json_response(value: Any, status: int = 200) -> Response:
    return Response(_encode(value), status_code=status, media_type="application/json")


def encode_cursor(created_at: datetime, key: str) -> str:
    """An opaque, URL-safe cursor: a timestamp's ``+00:00`` pasted into a query string reads as a space."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{key}".encode()).decode().rstrip("=")


MAX_PAGE = 500


def page_size(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def split_page(found: list[T], limit: int, key: Callable[[T], tuple[datetime, str]]) -> tuple[list[T], str | None]:
    """``found`` was fetched with ``limit + 1``: the page, and the cursor to the next one if any."""
    page = found[:limit]
    return page, (encode_cursor(*key(page[-1])) if len(found) > limit else None)


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, sep, key = text.partition("|")
        if not sep:
            raise ValueError("no key")
        return datetime.fromisoformat(stamp), key
    except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error is a ValueError
        raise ApiError("invalid_request", "bad cursor") from exc


class PlatformController(Controller):
    path = "/platform"
    tags = ["platform"]

    @put("/gateway", summary="Set the platform's DOKU credentials, fee and commission defaults")
    async def put_gateway(
        self, request: Request, services: ServicesDep, platform_id: PlatformId, data: JSONBody[GatewayIn]
    ) -> GatewayOut:
        data = await strict(request, data)
        async with services.pool.acquire() as conn:
            gateway = await configure_gateway(conn, platform_id, **msgspec.structs.asdict(data))
        return GatewayOut.of(gateway)

    @get("/gateway", summary="The platform's DOKU settings (the secret is never shown)")
    async def get_gateway(self, services: ServicesDep, platform_id: PlatformId) -> GatewayOut:
        return GatewayOut.of(await get_gateway(services.pool, platform_id))


class SellerController(Controller):
    path = "/sellers"
    tags = ["sellers"]

    @post("/", summary="Create a seller (opens its pending, available and debt accounts)", status_code=201)
    async def create(
        self, request: Request, services: ServicesDep, platform_id: PlatformId, data: JSONBody[SellerIn]
    ) -> Response[Seller]:
        data = await strict(request, data)

        async def run() -> Response:
            seller = await sellers.create_seller(
                services.pool, services.ledger, platform_id, **msgspec.structs.asdict(data)
            )
            return json_response(seller, 201)

        return await idempotent(request, services.pool, platform_id, run)

    @get("/", summary="List sellers (keyset by seller id)")
    async def list_(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        after: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> list[Seller]:
        return await sellers.list_sellers(services.pool, platform_id, after=after, limit=min(limit, 500))

    @get("/{seller_id:str}", summary="One seller")
    async def get_one(self, services: ServicesDep, platform_id: PlatformId, seller_id: FromPath[str]) -> Seller:
        return await sellers.get_seller(services.pool, platform_id, seller_id)


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]

    @post(
        "/",
        summary="Create an order: validate, freeze the split, send the signed payment request to DOKU",
        status_code=201,
    )
    async def create(
        self, request: Request, services: ServicesDep, platform_id: PlatformId, data: JSONBody[OrderIn]
    ) -> Response[OrderOut]:
        data = await strict(request, data)

        async def run() -> Response:
            order = await payments.create_order(services, platform_id, data)
            return json_response(payments.order_out(order), 201)

        return await idempotent(request, services.pool, platform_id, run)

    @get("/", summary="List orders (filters, keyset pagination by creation time)")
    async def list_(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        status: FromQuery[str | None] = None,
        seller_id: FromQuery[str | None] = None,
        created_from: FromQuery[datetime | None] = None,
        created_to: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
    ) -> OrderPage:
        limit = page_size(limit)
        found = await orders.list_orders(
            services.pool,
            platform_id,
            status=status,
            seller_id=seller_id,
            created_from=created_from,
            created_to=created_to,
            after=decode_cursor(cursor),
            limit=limit + 1,
        )
        page, next_cursor = split_page(found, limit, lambda o: (o.created_at, o.invoice_number))
        return OrderPage(items=[payments.order_out(o) for o in page], next_cursor=next_cursor)

    @get("/{invoice_number:str}", summary="One order with its frozen allocation")
    async def get_one(self, services: ServicesDep, platform_id: PlatformId, invoice_number: FromPath[str]) -> OrderOut:
        return payments.order_out(await orders.get_order(services.pool, platform_id, invoice_number))

    @post(
        "/{invoice_number:str}/send",
        summary="Resend a payment request DOKU did not receive (same Request-Id)",
        status_code=200,
    )
    async def send(
        self, request: Request, services: ServicesDep, platform_id: PlatformId, invoice_number: FromPath[str]
    ) -> Response[OrderOut]:
        async def run() -> Response:
            order = await payments.send_order(services, platform_id, invoice_number)
            return json_response(payments.order_out(order))

        return await idempotent(request, services.pool, platform_id, run)

    @post("/{invoice_number:str}/status-check", summary="Ask DOKU for the order's status and apply it", status_code=200)
    async def status_check(
        self, request: Request, services: ServicesDep, platform_id: PlatformId, invoice_number: FromPath[str]
    ) -> Response[OrderOut]:
        async def run() -> Response:
            order = await payments.check_order_status(services, platform_id, invoice_number)
            return json_response(payments.order_out(order))

        return await idempotent(request, services.pool, platform_id, run)

    @post("/{invoice_number:str}/refunds", summary="Refund all or part of a captured order", status_code=201)
    async def refund(
        self,
        request: Request,
        services: ServicesDep,
        platform_id: PlatformId,
        invoice_number: FromPath[str],
        data: JSONBody[RefundIn],
    ) -> Response[RefundOut]:
        data = await strict(request, data)

        async def run() -> Response:
            refund = await payments.create_refund(services, platform_id, invoice_number, data)
            return json_response(payments.refund_out(refund), 201)

        return await idempotent(request, services.pool, platform_id, run)

    @get("/{invoice_number:str}/refunds", summary="The order's refunds")
    async def refunds_of(
        self, services: ServicesDep, platform_id: PlatformId, invoice_number: FromPath[str]
    ) -> list[RefundOut]:
        await orders.get_order(services.pool, platform_id, invoice_number)
        return [payments.refund_out(r) for r in await refunds.list_refunds(services.pool, platform_id, invoice_number)]


class RefundController(Controller):
    path = "/refunds"
    tags = ["refunds"]

    @get("/{refund_id:str}", summary="One refund")
    async def get_one(self, services: ServicesDep, platform_id: PlatformId, refund_id: FromPath[str]) -> RefundOut:
        return payments.refund_out(await refunds.get_refund(services.pool, platform_id, refund_id))

    @post("/{refund_id:str}/retry", summary="Ask DOKU again about a refund left requested", status_code=200)
    async def retry(
        self, request: Request, services: ServicesDep, platform_id: PlatformId, refund_id: FromPath[str]
    ) -> Response[RefundOut]:
        async def run() -> Response:
            return json_response(payments.refund_out(await payments.send_refund(services, platform_id, refund_id)))

        return await idempotent(request, services.pool, platform_id, run)


def marketplace_handlers() -> list[Any]:
    return [PlatformController, SellerController, OrderController, RefundController]
