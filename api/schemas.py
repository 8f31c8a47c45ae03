"""Wire types of the marketplace API (``…In`` for requests, ``…Out`` for answers).

Rule: amounts are integer rupiah, rates integer basis points; constraints live in ``Meta`` so that
bad input is rejected at the edge with ``invalid_request`` before any state is touched. Each ``…In``
turns into the use case's own input (``draft()``); each ``…Out`` is made from a domain record
(by ``ledger.views``, shared with the events' ``data``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from api.problems import ApiError
from ledger import split
from ledger.orders import INVOICE_NUMBER, INVOICE_NUMBER_RULE, CartSplit, ExplicitSplit, OrderDraft
from ledger.refunds import RefundLine
from ledger.service.payouts import PayoutDraft
from ledger.service.refunds import RefundDraft
from ledger.service.sellers import SellerDraft
from ledger.store.gateways import GatewaySettings

# The answers' shapes are the resources as ``ledger.views`` shows them (events carry the same data).
from ledger.views import AllocationOut as AllocationOut
from ledger.views import OrderOut as OrderOut
from ledger.views import RefundOut as RefundOut
from ledger.views import SellerShareOut as SellerShareOut
from ledger.views import order_out as order_out
from ledger.views import refund_out as refund_out

Rupiah = Annotated[int, Meta(ge=1, le=999_999_999_999, description="whole rupiah")]
NonNegativeRupiah = Annotated[int, Meta(ge=0, le=999_999_999_999, description="whole rupiah")]
Bps = Annotated[int, Meta(ge=0, le=10_000, description="basis points (10000 = 100 %)")]
Id = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Wire types refuse fields they do not know: in a money API a typo is an error."""


# -- platform -------------------------------------------------------------------------------


class GatewayIn(Struct, frozen=True, kw_only=True):
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

    def __repr__(self) -> str:  # the secret key must never reach a log line
        return f"GatewayIn(client_id={self.client_id!r}, base_url={self.base_url!r}, secret_key=***)"


# -- sellers --------------------------------------------------------------------------------


class SellerIn(Struct, frozen=True, kw_only=True):
    seller_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["batik-sari"])]
    name: Annotated[str, Meta(min_length=1, max_length=200, examples=["Batik Sari"])]
    commission_bps: Bps | None = None
    doku_settlement_id: str | None = None
    metadata: dict[str, Any] = {}


# -- orders ---------------------------------------------------------------------------------


class ItemIn(Struct, frozen=True, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    price: NonNegativeRupiah
    quantity: Annotated[int, Meta(ge=1, le=1_000_000)]
    seller_id: Id | None = None


class CustomerIn(Struct, frozen=True, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    email: Annotated[str, Meta(min_length=3, max_length=200)]
    phone: str | None = None


class ShareIn(Struct, frozen=True, kw_only=True):
    party: Id
    bps: Bps | None = None
    fixed: NonNegativeRupiah | None = None


class CartSplitIn(Struct, frozen=True, kw_only=True, tag="cart"):
    """Each item's seller gets its subtotal less the platform's commission."""

    commission_bps: Bps | None = None  # overrides the platform's and the sellers' rates for this order
    fixed_fee: NonNegativeRupiah = 0


class ExplicitSplitIn(Struct, frozen=True, kw_only=True, tag="explicit"):
    """Named shares in basis points or rupiah; the remainder goes to ``remainder_to``."""

    shares: list[ShareIn]
    remainder_to: str = "platform"


class OrderIn(Struct, frozen=True, kw_only=True):
    FIELD_CODES: ClassVar[dict[str, str]] = {"$.invoice_number": "invalid_invoice_number"}

    invoice_number: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            pattern=INVOICE_NUMBER.pattern,
            description=f"{INVOICE_NUMBER_RULE}: it names the order in URLs (else 422 invalid_invoice_number)",
            examples=["INV-20261124-0001"],
        ),
    ]
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


class OrderPage(Struct, frozen=True, kw_only=True):
    items: list[OrderOut]
    has_more: bool
    next_cursor: str | None


# -- refunds --------------------------------------------------------------------------------


class RefundLineIn(Struct, frozen=True, kw_only=True):
    """A line item of the order coming back: its ``index`` (0-based, in the order's ``line_items``)
    or its ``name`` (unique in the order), and how many."""

    index: Annotated[int, Meta(ge=0, le=499)] | None = None
    name: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    quantity: Annotated[int, Meta(ge=1, le=1_000_000)] = 1


class RefundIn(Struct, frozen=True, kw_only=True):
    """A refund: an ``amount`` shared in proportion (or by ``parties``), or ``line_items`` coming back
    (their seller share, commission and fee part exactly; ``amount``, if given, must be their price)."""

    amount: Annotated[int, Meta(ge=1, le=999_999_999_999, description="whole rupiah", examples=[85_000])] | None = None
    reason: Annotated[str, Meta(min_length=1, max_length=500, examples=["item returned"])]
    # gateway: DOKU refunds; manual: the platform's bank transfer (reference required); deposit: DOKU's
    # Refund Service pays it out of the platform's deposit (POST /v1/platform/refund-deposit/top-ups)
    mode: Literal["gateway", "manual", "deposit"] = "gateway"
    reference: str | None = None  # the bank transfer reference of a manual refund
    parties: dict[str, NonNegativeRupiah] | None = None  # explicit per-party amounts
    line_items: (
        Annotated[
            list[RefundLineIn],
            Meta(min_length=1, max_length=500, examples=[[{"name": "Kopi Gayo 250 g", "quantity": 1}]]),
        ]
        | None
    ) = None


class RefundCompleteIn(Struct, frozen=True, kw_only=True):
    reference: str | None = None


class TopUpIn(Struct, frozen=True, kw_only=True):
    amount: Annotated[int, Meta(ge=1, le=999_999_999_999, description="whole rupiah", examples=[5_000_000])]
    reference: Annotated[str, Meta(min_length=1, max_length=200, examples=["BCA-TRX-DEPOSIT-01"])]


# -- payouts --------------------------------------------------------------------------------


class PayoutIn(Struct, frozen=True, kw_only=True):
    seller_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["batik-sari"])]
    amount: Annotated[int, Meta(ge=1, le=999_999_999_999, description="whole rupiah", examples=[222_078])]
    reference: Annotated[str, Meta(examples=["BCA-TRX-001"])] | None = None
    status: Literal["pending", "paid"] = "pending"


class PayoutFailIn(Struct, frozen=True, kw_only=True):
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class PayoutConfirmIn(Struct, frozen=True, kw_only=True):
    reference: str | None = None


# -- settlement -----------------------------------------------------------------------------


class SettlementImportIn(Struct, frozen=True, kw_only=True):
    """A settlement report as JSON: either ``lines`` or a CSV document in ``csv``."""

    source_name: str = "api"
    csv: str | None = None
    lines: list[dict[str, Any]] | None = None
    mapping: dict[str, str] | None = None


# -- from the wire to the use cases, and back -----------------------------------------------


def gateway_settings(data: GatewayIn) -> GatewaySettings:
    return msgspec.convert(msgspec.structs.asdict(data), GatewaySettings)


def seller_draft(data: SellerIn) -> SellerDraft:
    return SellerDraft(**msgspec.structs.asdict(data))


def order_draft(data: OrderIn) -> OrderDraft:
    chosen = data.split
    split_input: CartSplit | ExplicitSplit = (
        CartSplit(commission_bps=chosen.commission_bps, fixed_fee=chosen.fixed_fee)
        if isinstance(chosen, CartSplitIn)
        else ExplicitSplit(
            shares=tuple(split.Share(party=s.party, bps=s.bps, fixed=s.fixed) for s in chosen.shares),
            remainder_to=chosen.remainder_to,
        )
    )
    return OrderDraft(
        invoice_number=data.invoice_number,
        amount=data.amount,
        line_items=tuple(
            split.LineItem(name=i.name, price=i.price, quantity=i.quantity, seller_id=i.seller_id)
            for i in data.line_items
        ),
        customer={"name": data.customer.name, "email": data.customer.email, "phone": data.customer.phone},
        redirect_url=data.redirect_url,
        cash_tag=data.cash_tag,
        split=split_input,
        fee_bearer=data.fee_bearer,
        basis=data.basis,
        refund_commission=data.refund_commission,
        request=msgspec.to_builtins(data),
    )


def refund_draft(data: RefundIn) -> RefundDraft:
    if data.mode == "manual" and not data.reference:
        raise ApiError("invalid_request", "a manual refund needs the reference of the transfer that paid it")
    if data.amount is None and not data.line_items:
        raise ApiError("invalid_request", "give the refund's amount or its line_items")
    if data.line_items and data.parties is not None:
        raise ApiError("invalid_request", "give line_items or parties, not both")
    lines = (
        tuple(RefundLine(index=line.index, name=line.name, quantity=line.quantity) for line in data.line_items)
        if data.line_items
        else None
    )
    return RefundDraft(
        amount=data.amount,
        reason=data.reason,
        mode=data.mode,
        reference=data.reference,
        parties=data.parties,
        line_items=lines,
    )


def payout_draft(data: PayoutIn) -> PayoutDraft:
    return PayoutDraft(
        seller_id=data.seller_id, amount=data.amount, reference=data.reference, mark_paid=data.status == "paid"
    )
