"""Orders and refunds as the platform sees them: the ledger's use cases plus the DOKU calls.

Rules:
* An order is validated, allocated and stored before DOKU is called, with the Request-Id it will
  always be sent with; if DOKU cannot be reached the order stays ``send_failed`` (retryable with
  the same Request-Id, which DOKU treats as an idempotency key), never lost, never duplicated.
* DOKU's "SUCCESS" to a payment request only means the request reached the customer's app; only a
  notification or a status check captures.
* A gateway refund is reserved first, then sent; DOKU's answer decides succeeded or failed; when
  DOKU cannot be reached the refund stays ``requested`` and can be retried with the same Request-Id.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from api.gateways import Gateway, get_gateway
from api.metrics import METRICS
from api.problems import ApiError
from api.schemas import (
    AllocationOut,
    CartSplitIn,
    OrderIn,
    OrderOut,
    RefundIn,
    RefundOut,
    SellerShareOut,
)
from jenius import errors as jerrors
from jenius import messages as jmsg
from ledger import errors, orders, refunds, sellers, split
from ledger.orders import CaptureRequest, CaptureResult, Order

log = logging.getLogger("splitledger.payments")


def order_out(order: Order) -> OrderOut:
    allocation = order.allocation
    return OrderOut(
        invoice_number=order.invoice_number,
        amount=order.amount,
        status=order.status,
        allocation=AllocationOut(
            gross=allocation.gross,
            doku_fee=allocation.fee,
            fee_bearer=allocation.fee_bearer,
            basis=allocation.basis,
            platform=allocation.platform,
            sellers=[
                SellerShareOut(seller_id=s.seller_id, subtotal=s.subtotal, commission=s.commission,
                               fee_share=s.fee_share, net=s.net)
                for s in allocation.sellers
            ],
        ),
        refunded_amount=order.refunded_amount,
        refundable_amount=order.amount - order.refund_reserved if order.status == "captured" else 0,
        captured_at=order.captured_at,
        settled_at=order.settled_at,
        doku_request_id=order.doku_request_id,
        doku_error=order.doku_error,
        closed_reason=order.closed_reason,
        created_at=order.created_at,
        updated_at=order.updated_at,
        links={
            "self": f"/v1/orders/{order.invoice_number}",
            "refunds": f"/v1/orders/{order.invoice_number}/refunds",
            "capture_entry": f"/v1/ledger/entries/{order.capture_entry_id}" if order.capture_entry_id else "",
        },
    )


def refund_out(refund: refunds.Refund) -> RefundOut:
    return RefundOut(
        refund_id=refund.refund_id,
        invoice_number=refund.invoice_number,
        amount=refund.amount,
        reason=refund.reason,
        mode=refund.mode,
        reference=refund.reference,
        status=refund.status,
        reversal=refund.reversal.parts() if refund.reversal is not None else None,
        entry_id=refund.entry_id,
        failure=refund.failure,
        created_at=refund.created_at,
        completed_at=refund.completed_at,
    )


async def _policy_for(
    services: Any, platform_id: str, data: OrderIn, gateway: Gateway
) -> tuple[orders.OrderPolicy, dict[str, sellers.Seller]]:
    """The order's frozen policies, and the sellers it names (every one must exist)."""
    seller_ids = sorted({i.seller_id for i in data.line_items if i.seller_id})
    if not isinstance(data.split, CartSplitIn):
        seller_ids = sorted(set(seller_ids) | {s.party for s in data.split.shares if s.party != split.PLATFORM})
        if data.split.remainder_to != split.PLATFORM:
            seller_ids = sorted(set(seller_ids) | {data.split.remainder_to})
    known = await sellers.sellers_by_id(services.pool, platform_id, seller_ids)
    unknown = [s for s in seller_ids if s not in known]
    if unknown:
        raise errors.UnknownSeller(f"unknown seller(s): {', '.join(unknown)}", sellers=unknown)
    if isinstance(data.split, CartSplitIn):
        policy: split.SplitPolicy = split.CartPolicy(
            commission_bps=gateway.commission_bps,
            seller_commission_bps={s: known[s].commission_bps for s in known if known[s].commission_bps is not None},
            order_commission_bps=data.split.commission_bps,
            fixed_fee=data.split.fixed_fee,
        )
    else:
        policy = split.ExplicitPolicy(
            shares=tuple(split.Share(party=s.party, bps=s.bps, fixed=s.fixed) for s in data.split.shares),
            remainder_to=data.split.remainder_to,
        )
    frozen = orders.OrderPolicy(
        split=policy,
        fee=split.FeePolicy(bps=gateway.fee_bps, fixed=gateway.fee_fixed, bearer=data.fee_bearer or gateway.fee_bearer),
        refund=split.RefundPolicy(refund_commission=data.refund_commission),
        basis=data.basis,
    )
    return frozen, known


def _payment_request(data: OrderIn, allocation: split.Allocation, gateway: Gateway, bank_ids: dict[str, str],
                     platform_id: str) -> jmsg.PaymentRequest:
    settlement: tuple[jmsg.SettlementShare, ...] = ()
    if gateway.send_split_instruction and gateway.platform_settlement_id:
        instruction = split.build_settlement_instruction(allocation, bank_ids, gateway.platform_settlement_id)
        settlement = tuple(msgspec.convert(share, jmsg.SettlementShare) for share in instruction)
    return jmsg.build_payment_request(
        invoice_number=data.invoice_number,
        amount=data.amount,
        line_items=tuple(jmsg.LineItem(name=i.name, price=i.price, quantity=i.quantity) for i in data.line_items),
        customer=jmsg.Customer(name=data.customer.name, email=data.customer.email, phone=data.customer.phone),
        redirect_url=data.redirect_url,
        cash_tag=data.cash_tag,
        settlement=settlement,
        report=(jmsg.ReportColumn(key="splitledger_platform", value=platform_id),),
    )


async def create_order(services: Any, platform_id: str, data: OrderIn) -> Order:
    gateway = await get_gateway(services.pool, platform_id)
    policy, known = await _policy_for(services, platform_id, data, gateway)
    items = tuple(
        split.LineItem(name=i.name, price=i.price, quantity=i.quantity, seller_id=i.seller_id) for i in data.line_items
    )
    allocation = split.allocate(data.amount, items, policy.split, policy.fee, basis=policy.basis)
    bank_ids = {s: r.doku_settlement_id for s, r in known.items() if r.doku_settlement_id}
    wire = _payment_request(data, allocation, gateway, bank_ids, platform_id)
    problems = jmsg.payment_request_problems(wire)
    if problems:
        raise ApiError("invalid_request", "the order breaks DOKU's rules",
                       problems=[msgspec.structs.asdict(p) for p in problems])
    order = await orders.insert_order(
        services.pool,
        platform_id,
        invoice_number=data.invoice_number,
        amount=data.amount,
        request=msgspec.to_builtins(data) | {"doku_request": msgspec.to_builtins(wire)},
        policy=policy,
        allocation=allocation,
        doku_request_id=f"pay-{secrets.token_hex(12)}",
    )
    return await send_order(services, platform_id, order.invoice_number, order=order, gateway=gateway)


async def send_order(
    services: Any, platform_id: str, invoice_number: str, *, order: Order | None = None, gateway: Gateway | None = None
) -> Order:
    """Send (or resend, with the same Request-Id) an order's payment request to DOKU."""
    order = order or await orders.get_order(services.pool, platform_id, invoice_number)
    if order.status not in ("created", "send_failed"):
        return order
    gateway = gateway or await get_gateway(services.pool, platform_id)
    client = await services.extras["gateways"].client(gateway)
    wire = msgspec.convert(order.request["doku_request"], jmsg.PaymentRequest)
    try:
        await client.request_payment(wire, request_id=order.doku_request_id)
    except jerrors.Rejected as exc:
        METRICS.count("payment_requests", "rejected")
        moved = await orders.set_status(services.pool, platform_id, invoice_number, "failed",
                                doku_error={"code": exc.code, "doku_code": exc.doku_code, "detail": str(exc)},
                                closed_reason="rejected_by_doku")
    except jerrors.JeniusError as exc:
        METRICS.count("payment_requests", exc.code)
        log.warning("payment request not delivered", extra={"invoice_number": invoice_number, "code": exc.code})
        moved = await orders.set_status(services.pool, platform_id, invoice_number, "send_failed",
                                only_from=("created", "send_failed"),
                                doku_error={"code": exc.code, "detail": str(exc)})
    else:
        METRICS.count("payment_requests", "delivered")
        moved = await orders.set_status(services.pool, platform_id, invoice_number, "pending",
                                        only_from=("created", "send_failed"))
    # None: a notification or status check moved the order meanwhile; read what it is now.
    return moved or await orders.get_order(services.pool, platform_id, invoice_number)


def _parse_doku_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def apply_transaction_status(
    services: Any, platform_id: str, invoice_number: str, amount: int, status: str, date: str | None, source: str
) -> str:
    """The one path from DOKU's word about a payment to the books; returns the outcome."""
    status = status.upper()
    if status == "SUCCESS":
        result: CaptureResult = await services.extras["batcher"].capture(
            platform_id,
            CaptureRequest(invoice_number=invoice_number, amount=amount, at=_parse_doku_time(date), source=source),
        )
        if result.outcome in ("amount_mismatch", "unknown_invoice"):
            await record_exception(services, platform_id, kind=result.outcome, source=source,
                                   invoice_number=invoice_number, expected=result.expected, actual=amount)
        METRICS.count("captures", result.outcome)
        return result.outcome
    if status in ("FAILED", "EXPIRED", "TIMEOUT"):
        closed = await orders.set_status(services.pool, platform_id, invoice_number,
                                         "expired" if status in ("EXPIRED", "TIMEOUT") else "failed",
                                         closed_reason=f"doku_{status.lower()}")
        return "closed" if closed is not None else "ignored"
    return "ignored"


async def record_exception(services: Any, platform_id: str, *, kind: str, source: str, invoice_number: str | None,
                           expected: int | None, actual: int | None, detail: dict[str, Any] | None = None) -> None:
    METRICS.count("reconciliation_exceptions", kind)
    await services.pool.execute(
        """
        INSERT INTO reconciliation_exceptions (platform_id, kind, source, invoice_number, expected, actual, detail)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
        """,
        platform_id, kind, source, invoice_number, expected, actual,
        msgspec.json.encode(detail or {}).decode(),
    )


async def check_order_status(services: Any, platform_id: str, invoice_number: str) -> Order:
    """Status fallback: ask DOKU about an order that is still open, and apply the answer."""
    order = await orders.get_order(services.pool, platform_id, invoice_number)
    if order.status in ("created", "send_failed"):
        return await send_order(services, platform_id, invoice_number)
    if order.status != "pending":
        return order
    gateway = await get_gateway(services.pool, platform_id)
    client = await services.extras["gateways"].client(gateway)
    try:
        answer = await client.check_status(invoice_number)
    except jerrors.JeniusError as exc:
        METRICS.count("status_checks", exc.code)
        return order
    METRICS.count("status_checks", answer.transaction.status.lower())
    await apply_transaction_status(services, platform_id, invoice_number, int(answer.order.amount),
                                   answer.transaction.status, answer.transaction.date, "status_check")
    return await orders.get_order(services.pool, platform_id, invoice_number)


async def check_stale_orders(services: Any, older_than_s: int) -> int:
    before = datetime.now(UTC) - timedelta(seconds=older_than_s)
    checked = 0
    for platform_id in await services.pool.fetch("SELECT platform_id FROM gateways ORDER BY platform_id"):
        for invoice in await orders.pending_orders_older_than(services.pool, platform_id["platform_id"], before):
            await check_order_status(services, platform_id["platform_id"], invoice)
            checked += 1
    return checked


# -- refunds --------------------------------------------------------------------------------


async def create_refund(services: Any, platform_id: str, invoice_number: str, data: RefundIn) -> refunds.Refund:
    if data.mode == "manual" and not data.reference:
        raise ApiError("invalid_request", "a manual refund needs the reference of the transfer that paid it")
    refund = await refunds.begin_refund(
        services.pool,
        platform_id,
        refund_id=f"rf-{secrets.token_hex(10)}",
        invoice_number=invoice_number,
        amount=data.amount,
        reason=data.reason,
        mode=data.mode,
        reference=data.reference,
        explicit=data.parties,
    )
    if refund.mode == "manual":
        return await refunds.complete_refund(services.pool, services.ledger, platform_id, refund.refund_id)
    return await send_refund(services, platform_id, refund.refund_id)


async def send_refund(services: Any, platform_id: str, refund_id: str) -> refunds.Refund:
    """Ask DOKU to refund (or ask again, same Request-Id) and book the answer."""
    refund = await refunds.get_refund(services.pool, platform_id, refund_id)
    if refund.status != "requested" or refund.mode != "gateway":
        return refund
    gateway = await get_gateway(services.pool, platform_id)
    client = await services.extras["gateways"].client(gateway)
    try:
        await client.refund(invoice_number=refund.invoice_number, amount=refund.amount, reason=refund.reason,
                            request_id=refund.doku_request_id or refund.refund_id)
    except jerrors.Rejected as exc:
        METRICS.count("refunds", "rejected")
        return await refunds.fail_refund(services.pool, platform_id, refund_id,
                                         {"code": exc.code, "doku_code": exc.doku_code, "detail": str(exc)})
    except jerrors.JeniusError as exc:
        METRICS.count("refunds", exc.code)
        log.warning("refund not confirmed by DOKU; left requested", extra={"refund_id": refund_id, "code": exc.code})
        return refund
    METRICS.count("refunds", "succeeded")
    return await refunds.complete_refund(services.pool, services.ledger, platform_id, refund_id)
