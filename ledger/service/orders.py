"""Orders as the platform sees them: create, send to DOKU, learn DOKU's word, check the status.

Rules:
* An order is validated, allocated and stored (phase ``order_created``) before DOKU is called, with
  the Request-Id it will always be sent with (derived from the Idempotency-Key when there is one);
  if DOKU cannot be reached the order stays ``send_failed`` (retryable with the same Request-Id,
  which DOKU treats as an idempotency key), never lost, never duplicated.
* DOKU's "SUCCESS" to a payment request only means the request reached the customer's app; only a
  notification or a status check captures, through the one capture path (``apply_payment_status``).
* A capture that does not match its order is never posted; it becomes a reconciliation exception,
  in the same transaction as the notification's inbox row.
* DOKU's word never changes money state against the order's (docs/order-states.md): a SUCCESS after
  FAILED or EXPIRED, or a FAILED or EXPIRED after SUCCESS, is a ``conflict``: a ``status_conflict``
  exception with the evidence (one per order while it is open; later words add to its evidence),
  written in the batch of the word (``ledger.service.capture``), and the caller asks DOKU for the
  status (``check_order_status`` records the answer on it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger import errors, split
from ledger import events as ev
from ledger.orders import (
    INVOICE_NUMBER_RULE,
    STATUS_CONFLICT,
    Order,
    OrderDraft,
    freeze_policy,
    is_addressable_invoice_number,
    named_sellers,
)
from ledger.service.capture import CaptureBatcher, PaymentWord
from ledger.service.exceptions import record_status_check
from ledger.service.gateway import Delivered, Outcome, PaymentGateway, Refused, Unreachable
from ledger.service.idempotency import Keyed
from ledger.store.database import Database, UnitOfWork
from ledger.store.gateways import Gateway
from ledger.store.inbox import Delivery

SEND_STATUSES = ("created", "send_failed")


async def create_order(db: Database, doku: PaymentGateway, keyed: Keyed, platform_id: str, draft: OrderDraft) -> Order:
    if not is_addressable_invoice_number(draft.invoice_number):
        raise errors.InvalidInvoiceNumber(f"invoice numbers are {INVOICE_NUMBER_RULE}")
    request_id = keyed.derive("pay", 24)

    async def create(uow: UnitOfWork) -> None:
        gateway = await uow.gateways.get(platform_id)
        seller_ids = named_sellers(draft)
        known = await uow.sellers.by_id(platform_id, seller_ids)
        unknown = [s for s in seller_ids if s not in known]
        if unknown:
            raise errors.UnknownSeller(f"unknown seller(s): {', '.join(unknown)}", sellers=unknown)
        policy = freeze_policy(
            draft,
            commission_bps=gateway.commission_bps,
            seller_commission_bps={s: r.commission_bps for s, r in known.items() if r.commission_bps is not None},
            fee=split.FeePolicy(bps=gateway.fee_bps, fixed=gateway.fee_fixed, bearer=gateway.fee_bearer),  # type: ignore[arg-type]
        )
        allocation = split.allocate(draft.amount, draft.line_items, policy.split, policy.fee, basis=policy.basis)
        bank_ids = {s: r.doku_settlement_id for s, r in known.items() if r.doku_settlement_id}
        doku_request, problems = doku.payment_request(gateway, draft, allocation, bank_ids, platform_id)
        if problems:
            raise errors.GatewayRulesBroken("the order breaks DOKU's rules", problems=problems)
        order = await uow.orders.insert(
            platform_id,
            invoice_number=draft.invoice_number,
            amount=draft.amount,
            request=draft.request | {"doku_request": doku_request},
            policy=policy,
            allocation=allocation,
            doku_request_id=request_id,
        )
        uow.events.emit(platform_id, ev.order_event(ev.ORDER_CREATED, order))

    await keyed.phase("order_created", create)
    return await _deliver(db, doku, keyed, platform_id, draft.invoice_number)


async def send_order(db: Database, doku: PaymentGateway, keyed: Keyed, platform_id: str, invoice_number: str) -> Order:
    """Send (or resend, with the same Request-Id) an order's payment request to DOKU."""
    await keyed.check()
    return await _deliver(db, doku, keyed, platform_id, invoice_number)


async def _read(db: Database, platform_id: str, invoice_number: str) -> tuple[Order, Gateway]:
    async def read(uow: UnitOfWork) -> tuple[Order, Gateway]:
        return await uow.orders.get(platform_id, invoice_number), await uow.gateways.get(platform_id)

    return await db.read(read)


async def _deliver(db: Database, doku: PaymentGateway, keyed: Keyed, platform_id: str, invoice_number: str) -> Order:
    order, gateway = await _read(db, platform_id, invoice_number)
    if order.status not in SEND_STATUSES:
        return await keyed.finish(lambda uow: uow.orders.get(platform_id, invoice_number))
    outcome = await doku.request_payment(gateway, order)
    keyed.checkpoint("gateway:after_call")
    return await keyed.finish(lambda uow: _record_delivery(uow, platform_id, invoice_number, outcome))


async def _record_delivery(uow: UnitOfWork, platform_id: str, invoice_number: str, outcome: Outcome) -> Order:
    match outcome:
        case Delivered():
            moved = await uow.orders.set_status(platform_id, invoice_number, "pending", only_from=SEND_STATUSES)
        case Refused(code=code, detail=detail, gateway_code=gateway_code):
            moved = await uow.orders.set_status(
                platform_id,
                invoice_number,
                "failed",
                doku_error={"code": code, "doku_code": gateway_code, "detail": detail},
                closed_reason="rejected_by_doku",
            )
        case Unreachable(code=code, detail=detail):
            moved = await uow.orders.set_status(
                platform_id,
                invoice_number,
                "send_failed",
                only_from=SEND_STATUSES,
                doku_error={"code": code, "detail": detail},
            )
    uow.events.emit_all(platform_id, ev.closed_order_event(moved))
    # None: a notification or status check moved the order meanwhile; read what it is now.
    return moved or await uow.orders.get(platform_id, invoice_number)


def parse_doku_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def apply_payment_status(
    batcher: CaptureBatcher,
    platform_id: str,
    invoice_number: str,
    amount: int,
    status: str,
    date: str | None,
    source: str,
    delivery: Delivery | None = None,
) -> str:
    """The one path from DOKU's word about a payment to the books; returns the outcome.

    The word is one member of a group-committed batch (``ledger.service.capture``): its capture,
    its order's update, the reconciliation exception of a mismatch or of a contradiction
    (``conflict``) and ``delivery`` (the inbox row of a notification) commit together, before this
    returns.
    """
    word = PaymentWord(
        invoice_number=invoice_number, amount=amount, status=status.upper(), at=parse_doku_time(date), source=source
    )
    return (await batcher.apply(platform_id, word, delivery)).outcome


async def check_order_status(
    db: Database, doku: PaymentGateway, batcher: CaptureBatcher, keyed: Keyed, platform_id: str, invoice_number: str
) -> Order:
    """Status fallback: ask DOKU about an order that is still open, and apply the answer."""
    await keyed.check()
    order, gateway = await _read(db, platform_id, invoice_number)
    if order.status in SEND_STATUSES:
        return await _deliver(db, doku, keyed, platform_id, invoice_number)
    if order.status == "pending":
        answer = await doku.check_status(gateway, invoice_number)
        if not isinstance(answer, Unreachable):
            await apply_payment_status(
                batcher, platform_id, invoice_number, answer.amount, answer.status, answer.date, "status_check"
            )
    elif await db.read(lambda uow: uow.exceptions.open_of(platform_id, invoice_number, STATUS_CONFLICT)):
        # A contradiction is open: DOKU's own answer is evidence for the operator; it moves no money.
        answer = await doku.check_status(gateway, invoice_number)
        await db.transaction(lambda uow: record_status_check(uow, platform_id, invoice_number, answer))
    return await keyed.finish(lambda uow: uow.orders.get(platform_id, invoice_number))


async def check_stale_orders(
    db: Database, doku: PaymentGateway, batcher: CaptureBatcher, *, before: datetime, plain: Keyed
) -> int:
    """Check every open order created before ``before``, on every platform; returns how many."""

    async def stale(uow: UnitOfWork) -> list[tuple[str, str]]:
        found = []
        for platform_id in await uow.gateways.platform_ids():
            found += [(platform_id, i) for i in await uow.orders.open_older_than(platform_id, before)]
        return found

    checked = 0
    for platform_id, invoice in await db.read(stale):
        keyed = Keyed(db, platform_id, None, b"", plain.encode, faults=plain.faults)
        await check_order_status(db, doku, batcher, keyed, platform_id, invoice)
        checked += 1
    return checked


def stale_before(now: datetime, older_than_s: int) -> datetime:
    return now - timedelta(seconds=older_than_s)


async def get_order(db: Database, platform_id: str, invoice_number: str) -> Order:
    return await db.read(lambda uow: uow.orders.get(platform_id, invoice_number))


async def list_orders(
    db: Database,
    platform_id: str,
    *,
    status: str | None = None,
    seller_id: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[Order]:
    return await db.read(
        lambda uow: uow.orders.page(
            platform_id,
            status=status,
            seller_id=seller_id,
            created_from=created_from,
            created_to=created_to,
            after=after,
            limit=limit,
        )
    )
