"""The marketplace API under ``/v1``: platform gateway settings, sellers, orders and refunds.

Each handler decodes (strictly), runs one use case and encodes; POSTs answer through
``api.idempotency.answer`` so the Idempotency-Key's outcome commits with the effect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Response, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from api.bodies import Strict, decode_strict
from api.deps import HttpRequest, KeyedDep, PlatformId, ServicesDep
from api.idempotency import REQUIRED, answer
from api.routes.pages import Cursor, Limit, decode_cursor, split_page
from api.schemas import (
    GatewayIn,
    OrderIn,
    OrderOut,
    OrderPage,
    RefundCompleteIn,
    RefundIn,
    RefundOut,
    SellerIn,
    TopUpIn,
    gateway_settings,
    order_draft,
    order_out,
    refund_draft,
    refund_out,
    seller_draft,
)
from ledger.orders import OrderStatus
from ledger.refunds import RefundDeposit, TopUp
from ledger.sellers import Seller
from ledger.service import deposit, gateways, orders, refunds, sellers
from ledger.store.gateways import GatewayView


class SellerPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Seller]
    has_more: bool
    next_cursor: str | None


def _view(gateway: GatewayView) -> GatewayView:
    return GatewayView(**{f: getattr(gateway, f) for f in GatewayView.__struct_fields__})


class PlatformController(Controller):
    path = "/platform"
    tags = ["platform"]

    @put(
        "/gateway",
        summary="Set the platform's DOKU credentials, fee and commission defaults",
        dto=Strict[GatewayIn],
        return_dto=None,
    )
    async def put_gateway(
        self, services: ServicesDep, platform_id: PlatformId, data: JSONBody[GatewayIn]
    ) -> GatewayView:
        return _view(
            await gateways.configure_gateway(
                services.db,
                platform_id,
                gateway_settings(data),
                services.gateway_cache,
                allow_loopback_http=services.settings.doku_allow_loopback_http,
            )
        )

    @get("/gateway", summary="The platform's DOKU settings (the secret is never shown)")
    async def get_gateway(self, services: ServicesDep, platform_id: PlatformId) -> GatewayView:
        return _view(await gateways.get_gateway(services.db, platform_id))

    @get("/refund-deposit", summary="The deposit behind DOKU's Refund Service: balance, in flight, available")
    async def get_deposit(self, services: ServicesDep, platform_id: PlatformId) -> RefundDeposit:
        return await deposit.get_deposit(services.db, platform_id)

    @post(
        "/refund-deposit/top-ups",
        summary="Top up the refund deposit from the platform's bank (Idempotency-Key required)",
        description=(
            "Books Dr doku:refund_deposit, Cr platform:bank. Deposit refunds (POST /v1/orders/{invoice}/refunds "
            'with "mode": "deposit") draw on it; DOKU\'s Refund Service pays IDR 10,000 - 25,000,000 a refund '
            "[unconfirmed]."
        ),
        status_code=201,
        dto=Strict[TopUpIn],
        return_dto=None,
        opt=REQUIRED,
    )
    async def top_up(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        data: JSONBody[TopUpIn],
    ) -> Response[TopUp]:
        draft = deposit.TopUpDraft(amount=data.amount, reference=data.reference)
        return await answer(request, keyed, lambda: deposit.top_up_deposit(services.db, keyed, platform_id, draft))


class SellerController(Controller):
    path = "/sellers"
    tags = ["sellers"]

    @post(
        "/",
        summary="Create a seller (opens its pending, available and debt accounts)",
        status_code=201,
        dto=Strict[SellerIn],
        return_dto=None,
    )
    async def create(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        data: JSONBody[SellerIn],
    ) -> Response[Seller]:
        return await answer(
            request, keyed, lambda: sellers.create_seller(services.db, keyed, platform_id, seller_draft(data))
        )

    @get("/", summary="List sellers (by seller id)")
    async def list_(
        self, services: ServicesDep, platform_id: PlatformId, cursor: Cursor = None, limit: Limit = 100
    ) -> SellerPage:
        after = decode_cursor(cursor, tuple[str])
        found = await sellers.list_sellers(services.db, platform_id, after=after[0] if after else None, limit=limit + 1)
        page, next_cursor = split_page(found, limit, lambda s: (s.seller_id,))
        return SellerPage(items=page, has_more=next_cursor is not None, next_cursor=next_cursor)

    @get("/{seller_id:str}", summary="One seller")
    async def get_one(self, services: ServicesDep, platform_id: PlatformId, seller_id: FromPath[str]) -> Seller:
        return await sellers.get_seller(services.db, platform_id, seller_id)


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]

    @post(
        "/",
        summary="Create an order: validate, freeze the split, send the signed payment request to DOKU",
        status_code=201,
        dto=Strict[OrderIn],
        return_dto=None,
    )
    async def create(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        data: JSONBody[OrderIn],
    ) -> Response[OrderOut]:
        return await answer(
            request,
            keyed,
            lambda: orders.create_order(services.db, services.doku, keyed, platform_id, order_draft(data)),
            order_out,
        )

    @get("/", summary="List orders (filters, keyset pagination by creation time)")
    async def list_(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        status: FromQuery[OrderStatus | None] = None,
        seller_id: FromQuery[str | None] = None,
        created_from: FromQuery[datetime | None] = None,
        created_to: FromQuery[datetime | None] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> OrderPage:
        found = await orders.list_orders(
            services.db,
            platform_id,
            status=status,
            seller_id=seller_id,
            created_from=created_from,
            created_to=created_to,
            after=decode_cursor(cursor, tuple[datetime, str]),
            limit=limit + 1,
        )
        page, next_cursor = split_page(found, limit, lambda o: (o.created_at, o.invoice_number))
        return OrderPage(items=[order_out(o) for o in page], has_more=next_cursor is not None, next_cursor=next_cursor)

    @get("/{invoice_number:str}", summary="One order with its frozen allocation")
    async def get_one(self, services: ServicesDep, platform_id: PlatformId, invoice_number: FromPath[str]) -> OrderOut:
        return order_out(await orders.get_order(services.db, platform_id, invoice_number))

    @post(
        "/{invoice_number:str}/send",
        summary="Resend a payment request DOKU did not receive (same Request-Id)",
        status_code=200,
    )
    async def send(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        invoice_number: FromPath[str],
    ) -> Response[OrderOut]:
        return await answer(
            request,
            keyed,
            lambda: orders.send_order(services.db, services.doku, keyed, platform_id, invoice_number),
            order_out,
        )

    @post("/{invoice_number:str}/status-check", summary="Ask DOKU for the order's status and apply it", status_code=200)
    async def status_check(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        invoice_number: FromPath[str],
    ) -> Response[OrderOut]:
        return await answer(
            request,
            keyed,
            lambda: orders.check_order_status(
                services.db, services.doku, services.batcher, keyed, platform_id, invoice_number
            ),
            order_out,
        )

    @post(
        "/{invoice_number:str}/refunds",
        summary="Refund all or part of a captured order (Idempotency-Key required)",
        description=(
            "By amount (shared in proportion to what each party kept), by explicit per-party amounts "
            '(`parties`), or by line item: `{"line_items": [{"index": 1, "quantity": 1}]}` or '
            '`[{"name": "Kopi Gayo 250 g", "quantity": 1}]` takes back exactly those items\' seller share, '
            "commission and fee part (`index` is 0-based in the order's line_items). `mode`: gateway (DOKU "
            "refunds and deducts it from a later settlement), manual (a bank transfer: `reference` required), "
            "deposit (DOKU's Refund Service pays it out of the refund deposit; confirm with "
            "POST /v1/refunds/{refund_id}/confirm)."
        ),
        status_code=201,
        dto=Strict[RefundIn],
        return_dto=None,
        opt=REQUIRED,
    )
    async def refund(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        invoice_number: FromPath[str],
        data: JSONBody[RefundIn],
    ) -> Response[RefundOut]:
        return await answer(
            request,
            keyed,
            lambda: refunds.create_refund(
                services.db, services.doku, keyed, platform_id, invoice_number, refund_draft(data)
            ),
            refund_out,
        )

    @get("/{invoice_number:str}/refunds", summary="The order's refunds")
    async def refunds_of(
        self, services: ServicesDep, platform_id: PlatformId, invoice_number: FromPath[str]
    ) -> list[RefundOut]:
        return [refund_out(r) for r in await refunds.list_refunds(services.db, platform_id, invoice_number)]


class RefundController(Controller):
    path = "/refunds"
    tags = ["refunds"]

    @get("/{refund_id:str}", summary="One refund")
    async def get_one(self, services: ServicesDep, platform_id: PlatformId, refund_id: FromPath[str]) -> RefundOut:
        return refund_out(await refunds.get_refund(services.db, platform_id, refund_id))

    @post("/{refund_id:str}/retry", summary="Ask DOKU again about a refund left requested", status_code=200)
    async def retry(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        refund_id: FromPath[str],
    ) -> Response[RefundOut]:
        return await answer(
            request,
            keyed,
            lambda: refunds.send_refund(services.db, services.doku, keyed, platform_id, refund_id),
            refund_out,
        )

    @post(
        "/{refund_id:str}/confirm",
        summary="DOKU's Refund Service paid a deposit refund: it leaves the deposit, no longer in flight",
        status_code=200,
        opt=REQUIRED,
    )
    async def confirm(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        refund_id: FromPath[str],
    ) -> Response[RefundOut]:
        body = await request.body()
        data = decode_strict(body, RefundCompleteIn) if body.strip() else RefundCompleteIn()
        return await answer(
            request,
            keyed,
            lambda: refunds.confirm_deposit_refund(
                services.db, keyed, platform_id, refund_id, reference=data.reference
            ),
            refund_out,
        )


def marketplace_handlers() -> list[Any]:
    return [PlatformController, SellerController, OrderController, RefundController]
