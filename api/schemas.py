"""Wire types of the marketplace API (``…In`` for requests, ``…Out`` for answers).

Rule: amounts are integer rupiah, rates integer basis points; constraints live in ``Meta`` so that
bad input is rejected at the edge with ``invalid_request`` before any state is touched.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Request
from msgspec import Meta

from api.problems import ApiError

T = TypeVar("T")


async def strict(request: Request, data: T) -> T:
    """Re-read a body strictly: Litestar converts leniently ("50000" or 50000.0 become 50000), and a
    money API takes integers as integers — no strings, no floats."""
    if data is None:
        return data
    try:
        return msgspec.json.decode(await request.body(), type=type(data))
    except msgspec.ValidationError as exc:
        raise ApiError("invalid_request", str(exc)) from exc


Rupiah = Annotated[int, Meta(ge=1, le=999_999_999_999, description="whole rupiah")]
NonNegativeRupiah = Annotated[int, Meta(ge=0, le=999_999_999_999, description="whole rupiah")]
Bps = Annotated[int, Meta(ge=0, le=10_000, description="basis points (10000 = 100 %)")]
Id = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    pass


# -- platform -------------------------------------------------------------------------------


class GatewayIn(Struct):
    client_id: Annotated[str, Meta(min_length=1, max_length=128)]
    secret_key: Annotated[str, Meta(min_length=1, max_length=256)]
    base_url: str | None = None
    refund_path: str | None = None
    fee_bps: Bps = 0
    fee_fixed: NonNegativeRupiah = 0
    fee_bearer: Literal["platform", "sellers"] = "platform"
    commission_bps: Bps = 0
    platform_settlement_id: str | None = None
    send_split_instruction: bool = False


# -- sellers --------------------------------------------------------------------------------


class SellerIn(Struct):
    seller_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["batik-sari"])]
    name: Annotated[str, Meta(min_length=1, max_length=200, examples=["Batik Sari"])]
    commission_bps: Bps | None = None
    doku_settlement_id: str | None = None
    metadata: dict[str, Any] = {}


# -- orders ---------------------------------------------------------------------------------


class ItemIn(Struct):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    price: NonNegativeRupiah
    quantity: Annotated[int, Meta(ge=1, le=1_000_000)]
    seller_id: Id | None = None


class CustomerIn(Struct):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    email: Annotated[str, Meta(min_length=3, max_length=200)]
    phone: str | None = None


class ShareIn(Struct):
    party: Id
    bps: Bps | None = None
    fixed: NonNegativeRupiah | None = None


class CartSplitIn(Struct, tag="cart"):
    """Each item's seller gets its subtotal less the platform's commission."""

    commission_bps: Bps | None = None  # overrides the platform's and the sellers' rates for this order
    fixed_fee: NonNegativeRupiah = 0


class ExplicitSplitIn(Struct, tag="explicit"):
    """Named shares in basis points or rupiah; the remainder goes to ``remainder_to``."""

    shares: list[ShareIn]
    remainder_to: str = "platform"


class OrderIn(Struct):
    invoice_number: Annotated[str, Meta(min_length=1, max_length=64, examples=["INV-20261124-0001"])]
    amount: Annotated[int, Meta(ge=1, le=999_999_999_999, description="whole rupiah", examples=[385_000])]
    line_items: Annotated[
        list[ItemIn],
        Meta(
            min_length=1,
            max_length=500,
            examples=[
                [
                    {"name": "Batik tulis", "price": 150_000, "quantity": 2, "seller_id": "batik-sari"},
                    {"name": "Kopi Gayo 250 g", "price": 85_000, "quantity": 1, "seller_id": "kopi-kita"},
                ]
            ],
        ),
    ]
    customer: CustomerIn
    redirect_url: Annotated[str, Meta(min_length=1, max_length=2000, examples=["https://toko.example/return"])]
    cash_tag: Annotated[str, Meta(min_length=2, max_length=64, examples=["$astari"])]
    split: CartSplitIn | ExplicitSplitIn = CartSplitIn()
    fee_bearer: Literal["platform", "sellers"] | None = None
    basis: Literal["gross", "net"] = "gross"
    refund_commission: bool = True
    metadata: dict[str, Any] = {}


class SellerShareOut(Struct):
    seller_id: str
    subtotal: int
    commission: int
    fee_share: int
    net: int


class AllocationOut(Struct):
    gross: int
    doku_fee: int
    fee_bearer: str
    basis: str
    platform: int
    sellers: list[SellerShareOut]


class OrderOut(Struct):
    invoice_number: str
    amount: int
    status: str
    allocation: AllocationOut
    refunded_amount: int
    refundable_amount: int
    captured_at: datetime | None
    settled_at: datetime | None
    doku_request_id: str
    doku_error: dict[str, Any] | None
    closed_reason: str | None
    created_at: datetime
    updated_at: datetime
    links: dict[str, str]


class OrderPage(Struct):
    items: list[OrderOut]
    next_cursor: str | None


# -- refunds --------------------------------------------------------------------------------


class RefundIn(Struct):
    amount: Annotated[int, Meta(ge=1, le=999_999_999_999, description="whole rupiah", examples=[85_000])]
    reason: Annotated[str, Meta(min_length=1, max_length=500, examples=["item returned"])]
    mode: Literal["gateway", "manual"] = "gateway"
    reference: str | None = None  # the bank transfer reference of a manual refund
    parties: dict[str, NonNegativeRupiah] | None = None  # explicit per-party amounts


class RefundOut(Struct):
    refund_id: str
    invoice_number: str
    amount: int
    reason: str
    mode: str
    reference: str | None
    status: str
    reversal: dict[str, int] | None
    entry_id: int | None
    failure: dict[str, Any] | None
    created_at: datetime
    completed_at: datetime | None


class RefundCompleteIn(Struct):
    reference: str | None = None


# -- payouts --------------------------------------------------------------------------------


class PayoutIn(Struct):
    seller_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["batik-sari"])]
    amount: Annotated[int, Meta(ge=1, le=999_999_999_999, description="whole rupiah", examples=[222_078])]
    reference: Annotated[str, Meta(examples=["BCA-TRX-001"])] | None = None
    status: Literal["pending", "paid"] = "pending"


class PayoutFailIn(Struct):
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class PayoutConfirmIn(Struct):
    reference: str | None = None


# -- settlement -----------------------------------------------------------------------------


class SettlementImportIn(Struct):
    """A settlement report as JSON: either ``lines`` or a CSV document in ``csv``."""

    source_name: str = "api"
    csv: str | None = None
    lines: list[dict[str, Any]] | None = None
    mapping: dict[str, str] | None = None
