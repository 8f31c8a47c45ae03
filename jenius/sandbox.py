"""A simulated DOKU that signs, refuses and notifies like the real one, for tests and demos.

Rule: the sandbox is at least as strict as DOKU. A request is refused (DOKU-shaped error answer, see
:mod:`jenius.sandbox_model` for the shape and every code) when its signature is bad, its Client-Id
unknown, its timestamp off by more than ``max_request_skew_s``, its body malformed, its line items do
not sum to the amount, its amount is outside ``min_amount..max_amount`` (10,000 - 100,000,000 IDR by
default, [unconfirmed]) or its invoice number is over 64 characters. A repeat of a Request-Id with
the same body (and path) gets the first answer again with HTTP 409; with a different body,
``duplicate_request_id`` (409). Every answer to a known merchant is signed (``Response-Timestamp``,
digest of the answer body, GET answers included).

All state is in memory. One instance = one DOKU:

DOKU API (paths configurable, defaults as in :class:`jenius.client.JeniusConfig`)
    POST /jenius-digital-banking/v2/ServiceRequestPayment   payment request -> order PENDING
    POST <refund_path>                                      refund a captured order (partial allowed)
    GET  /orders/v1/status/{invoice_number or Request-Id}   DOKU's view of an order

Control API (unauthenticated: bind the sandbox to loopback)
    GET  /_sandbox/orders                                   every order
    GET  /_sandbox/orders/{invoice}[?client_id=]            one order and its notification deliveries
    POST /_sandbox/orders/{invoice}/approve|decline|expire  the customer in the Jenius app (409 unless PENDING)
    POST /_sandbox/orders/{invoice}/resend                  manual resend of the latest notification
    POST /_sandbox/notifications/flush                      release a notification held for reordering
    GET  /_sandbox/settlements/{YYYY-MM-DD}.csv[?client_id=][&invoice_number=A,B]
                                                            settlement report of the orders captured that
                                                            WIB day (columns: jenius.sandbox_report)
    GET  /_sandbox/faults, PUT /_sandbox/faults             read / patch the fault knobs (JSON)
    POST /_sandbox/merchants                                {"client_id", "secret_key", "notification_url"}

Customer outcomes: approve -> SUCCESS (captured), decline -> FAILED, expire -> EXPIRED; each sends a
signed notification. ``auto_approve_after_s`` approves by itself for demos; ``expire_after_s``
expires a request nobody answered. A refund leaves the order SUCCESS until fully refunded, then
REFUNDED; with ``notify_refunds`` a full refund also sends a REFUNDED notification [unconfirmed].

Faults (``sandbox.faults``, :class:`jenius.sandbox_model.Faults`): added latency, 5xx before
processing, timeouts *after* processing (the answer is lost, the retry meets the 409 path), badly
signed answers, and dropped, duplicated, reordered or badly signed notifications.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, get, post, put
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.types import ASGIApp

from jenius import signing
from jenius.client import (
    DEFAULT_PAYMENT_PATH,
    DEFAULT_REFUND_PATH,
    DEFAULT_STATUS_PATH_TEMPLATE,
    utc_now,
)
from jenius.messages import (
    MAX_AMOUNT_IDR,
    MAX_REQUEST_ID_LENGTH,
    MIN_AMOUNT_IDR,
    InternetBankingPayment,
    Notification,
    NotificationOrder,
    OrderEcho,
    PaymentRequest,
    PaymentResponse,
    Ref,
    ReportColumn,
    SettlementShare,
    StatusResponse,
    Transaction,
    encoder,
    parse_amount_text,
    payment_request_decoder,
    payment_request_problems,
    refund_request_decoder,
)
from jenius.sandbox_model import (
    OUTCOME_STATUS,
    Delivery,
    DeliveryAttempt,
    Faults,
    Refund,
    SandboxError,
    SandboxMerchant,
    SandboxOrder,
    error_body,
)
from jenius.sandbox_notify import DOKU_RETRY_SCHEDULE_S, BackgroundTasks, Notifier
from jenius.sandbox_report import fee_for, render_csv, settlement_rows

__all__ = [
    "Faults",
    "Sandbox",
    "SandboxError",
    "SandboxMerchant",
    "main",
    "run_sandbox",
    "serve_app",
    "serve_sandbox",
]

# Notification ids for Jenius are [unconfirmed]; these follow DOKU's generic shape.
SERVICE_ID = "INTERNET_BANKING"
ACQUIRER_ID = "BTPN"
CHANNEL_ID = "JENIUS"
MERCHANTS_ENV = "SPLITLEDGER_SANDBOX_MERCHANTS"

log = logging.getLogger("splitledger.jenius.sandbox")

Handler = Callable[[SandboxMerchant, str, bytes], tuple[int, bytes]]


class _StoredAnswer(msgspec.Struct, frozen=True):
    fingerprint: str  # target + digest of the body: what "the same request" means
    status: int
    body: bytes


class Sandbox:
    def __init__(
        self,
        *,
        merchants: Iterable[SandboxMerchant] = (),
        auto_approve_after_s: float | None = None,
        expire_after_s: float | None = None,
        retry_schedule_s: Sequence[float] = DOKU_RETRY_SCHEDULE_S,
        fee_bps: int = 100,  # DOKU's Jenius fee is unpublished: sandbox placeholders
        fee_fixed: int = 2_000,
        min_amount: int = MIN_AMOUNT_IDR,
        max_amount: int = MAX_AMOUNT_IDR,
        max_request_skew_s: float | None = 300.0,
        notify_refunds: bool = False,
        payment_path: str = DEFAULT_PAYMENT_PATH,
        refund_path: str = DEFAULT_REFUND_PATH,
        status_path_template: str = DEFAULT_STATUS_PATH_TEMPLATE,
        notification_timeout_s: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.faults = Faults()
        self.auto_approve_after_s = auto_approve_after_s
        self.expire_after_s = expire_after_s
        self.fee_bps = fee_bps
        self.fee_fixed = fee_fixed
        self.min_amount = min_amount
        self.max_amount = max_amount
        self.max_request_skew_s = max_request_skew_s
        self.notify_refunds = notify_refunds
        self.payment_path = payment_path
        self.refund_path = refund_path
        self.status_path_template = status_path_template
        self._clock = clock
        self._merchants: dict[str, SandboxMerchant] = {}
        self._orders: dict[tuple[str, str], SandboxOrder] = {}
        self._answers: dict[tuple[str, str], _StoredAnswer] = {}
        self._tasks = BackgroundTasks()
        self._notifier = Notifier(
            faults=self.faults,
            tasks=self._tasks,
            merchant=self._merchants.get,
            clock=clock,
            retry_schedule_s=tuple(retry_schedule_s),
            timeout_s=notification_timeout_s,
        )
        self._closing = asyncio.Event()
        for merchant in merchants:
            self.add_merchant(merchant)
        self.app = self._build_app()

    # --- merchants and inspection -----------------------------------------------------------------

    def add_merchant(self, merchant: SandboxMerchant) -> None:
        """Register (or replace) a merchant; DOKU knows it by Client-Id."""
        self._merchants[merchant.client_id] = merchant

    @property
    def merchants(self) -> tuple[SandboxMerchant, ...]:
        return tuple(self._merchants.values())

    def orders(self) -> tuple[SandboxOrder, ...]:
        return tuple(self._orders.values())

    def order(self, invoice_number: str, *, client_id: str | None = None) -> SandboxOrder:
        return self._orders[self._find(invoice_number, client_id)]

    def deliveries(self, invoice_number: str | None = None) -> tuple[Delivery, ...]:
        return tuple(
            d for d in self._notifier.deliveries if invoice_number is None or d.invoice_number == invoice_number
        )

    def settlement_report_csv(
        self, day: date, *, client_id: str | None = None, invoice_numbers: frozenset[str] | None = None
    ) -> str:
        rows = settlement_rows(
            self._orders.values(),
            day,
            fee_bps=self.fee_bps,
            fee_fixed=self.fee_fixed,
            client_id=client_id,
            invoice_numbers=invoice_numbers,
        )
        return render_csv(rows)

    # --- the customer in the Jenius app, and DOKU's operators --------------------------------------

    async def approve(self, invoice_number: str, *, client_id: str | None = None) -> SandboxOrder:
        return self._conclude(self._find(invoice_number, client_id), "approve")

    async def decline(self, invoice_number: str, *, client_id: str | None = None) -> SandboxOrder:
        return self._conclude(self._find(invoice_number, client_id), "decline")

    async def expire(self, invoice_number: str, *, client_id: str | None = None) -> SandboxOrder:
        return self._conclude(self._find(invoice_number, client_id), "expire")

    async def resend(self, invoice_number: str, *, client_id: str | None = None) -> DeliveryAttempt:
        """Resend the order's latest notification once, now (a new Request-Id, the same body)."""
        client_id, invoice_number = self._find(invoice_number, client_id)
        sent = [d for d in self._notifier.deliveries if d.client_id == client_id and d.invoice_number == invoice_number]
        if not sent:
            raise SandboxError("order_not_found", "no notification was sent for this order")
        return await self._notifier.resend(sent[-1])

    def flush_notifications(self) -> None:
        self._notifier.flush()

    @property
    def pending_tasks(self) -> int:
        """Background tasks still running: deliveries, scheduled retries, auto-outcomes."""
        return len(self._tasks)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait for every pending delivery, retry and auto-outcome to finish (a bound, not a pause:
        it returns as soon as they have; generous for a cold database on a Citus cluster, whose
        first batches of a fresh database answer in seconds)."""
        await self._tasks.drain(timeout_s)

    async def aclose(self) -> None:
        """Wake hung answers, cancel and await background tasks, close the notification client."""
        self._closing.set()
        await self._tasks.aclose()
        await self._notifier.aclose()

    def _find(self, invoice_number: str, client_id: str | None) -> tuple[str, str]:
        keys = [key for key in self._orders if key[1] == invoice_number and (client_id is None or key[0] == client_id)]
        if not keys:
            raise SandboxError("order_not_found", f"no order {invoice_number!r}")
        if len(keys) > 1:
            raise SandboxError("ambiguous_invoice_number", "several merchants use it: pass client_id")
        return keys[0]

    def _conclude(self, key: tuple[str, str], outcome: str) -> SandboxOrder:
        order = self._orders[key]
        if order.status != "PENDING":
            raise SandboxError("order_not_pending", f"order is {order.status}")
        now = self._clock()
        status = OUTCOME_STATUS[outcome]
        if status == "SUCCESS":
            order = msgspec.structs.replace(order, status=status, captured_at=now)
        else:
            order = msgspec.structs.replace(order, status=status, settled_at=now)
        self._orders[key] = order
        self._notifier.notify(order.client_id, self._notification(order, now))
        return order

    def _notification(self, order: SandboxOrder, at: datetime) -> Notification:
        return Notification(
            service=Ref(id=SERVICE_ID),
            acquirer=Ref(id=ACQUIRER_ID),
            channel=Ref(id=CHANNEL_ID),
            order=NotificationOrder(invoice_number=order.invoice_number, amount=order.amount),
            transaction=Transaction(
                status=order.status, date=signing.format_timestamp(at), original_request_id=order.request_id
            ),
        )

    async def _auto(self, key: tuple[str, str], outcome: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self._orders[key].status == "PENDING":
            self._conclude(key, outcome)

    # --- DOKU API: one pipeline, three handlers ---------------------------------------------------

    async def _doku_call(self, request: Request[Any, Any, Any], handler: Handler) -> Response[bytes]:
        if self.faults.latency_s > 0:
            await asyncio.sleep(self.faults.latency_s)
        if self.faults.fail_5xx_next > 0:
            self.faults.fail_5xx_next -= 1
            return _plain(self.faults.fail_5xx_status, error_body("service_unavailable", "injected fault"))
        target = signing.request_target(request.scope["raw_path"].decode("latin-1"))
        body = await request.body()
        is_get = request.method == "GET"
        merchant, request_id, refusal = self._authenticate(request.headers, target, None if is_get else body)
        if refusal is not None:
            status, answer = refusal.status, error_body(refusal.code, refusal.message)
        elif is_get:
            assert merchant is not None and request_id is not None
            status, answer = handler(merchant, request_id, body)
        else:
            # No await between the lookup and the store: a concurrent repeat sees the first answer.
            assert merchant is not None and request_id is not None
            key = (merchant.client_id, request_id)
            fingerprint = f"{target}\n{signing.digest(body)}"
            stored = self._answers.get(key)
            if stored is None:
                status, answer = handler(merchant, request_id, body)
                self._answers[key] = _StoredAnswer(fingerprint, status, answer)
            elif stored.fingerprint == fingerprint:
                status, answer = 409, stored.body
            else:
                error = SandboxError("duplicate_request_id", "Request-Id was used with another request")
                status, answer = error.status, error_body(error.code, error.message)
        if self.faults.timeout_next > 0:
            self.faults.timeout_next -= 1
            await self._hang()
        return self._signed(status, answer, merchant, request_id, target)

    def _authenticate(
        self, headers: Any, target: str, body: bytes | None
    ) -> tuple[SandboxMerchant | None, str | None, SandboxError | None]:
        client_id = headers.get("client-id")
        merchant = self._merchants.get(client_id) if client_id else None
        request_id = headers.get("request-id")
        if merchant is None:
            return None, request_id, SandboxError("invalid_client_id", "unknown or missing Client-Id")
        if not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
            return merchant, None, SandboxError("invalid_header", "Request-Id: 1 to 128 characters")
        timestamp = headers.get("request-timestamp")
        signature = headers.get("signature")
        if not timestamp or not signature:
            return merchant, request_id, SandboxError("invalid_header", "Request-Timestamp and Signature required")
        try:
            sent_at = signing.parse_timestamp(timestamp)
        except ValueError:
            return merchant, request_id, SandboxError("invalid_header", "Request-Timestamp: YYYY-MM-DDTHH:MM:SSZ")
        if not signing.verify(
            secret_key=merchant.secret_key,
            client_id=merchant.client_id,
            request_id=request_id,
            timestamp=timestamp,
            target=target,
            body=body,
            signature=signature,
        ):
            return merchant, request_id, SandboxError("invalid_signature", "Signature does not match")
        if self.max_request_skew_s is not None:
            skew = abs((self._clock() - sent_at).total_seconds())
            if skew > self.max_request_skew_s:
                return merchant, request_id, SandboxError("invalid_timestamp", "Request-Timestamp too far off")
        return merchant, request_id, None

    def _signed(
        self, status: int, body: bytes, merchant: SandboxMerchant | None, request_id: str | None, target: str
    ) -> Response[bytes]:
        if merchant is None or request_id is None:
            return _plain(status, body)
        timestamp = signing.format_timestamp(self._clock())
        key = merchant.secret_key + "-wrong" if self.faults.bad_response_signature else merchant.secret_key
        headers = {
            "Client-Id": merchant.client_id,
            "Request-Id": request_id,
            "Response-Timestamp": timestamp,
            "Signature": signing.sign(
                secret_key=key,
                client_id=merchant.client_id,
                request_id=request_id,
                timestamp=timestamp,
                target=target,
                body=body,
                timestamp_label=signing.RESPONSE_TIMESTAMP,
            ),
        }
        return Response(content=body, status_code=status, headers=headers, media_type="application/json")

    async def _hang(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.faults.timeout_hang_s)

    def _create_payment(self, merchant: SandboxMerchant, request_id: str, body: bytes) -> tuple[int, bytes]:
        try:
            req = payment_request_decoder.decode(body)
        except msgspec.DecodeError as exc:
            return _refusal(SandboxError("invalid_body", str(exc)))
        problems = payment_request_problems(req, min_amount=self.min_amount, max_amount=self.max_amount)
        if problems:
            return _refusal(SandboxError(problems[0].code, problems[0].detail))
        amount = int(req.order.amount)
        try:
            report = self._check_additional_info(req, amount)
        except SandboxError as exc:
            return _refusal(exc)
        key = (merchant.client_id, req.order.invoice_number)
        if key in self._orders:
            return _refusal(SandboxError("duplicate_invoice_number", "invoice_number was used before"))
        self._orders[key] = SandboxOrder(
            client_id=merchant.client_id,
            invoice_number=req.order.invoice_number,
            amount=amount,
            request_id=request_id,
            status="PENDING",
            created_at=self._clock(),
            report_columns=tuple((column.key, column.value) for column in report),
        )
        if self.auto_approve_after_s is not None:
            self._tasks.spawn(self._auto(key, "approve", self.auto_approve_after_s))
        if self.expire_after_s is not None:
            self._tasks.spawn(self._auto(key, "expire", self.expire_after_s))
        return 200, encoder.encode(
            PaymentResponse(
                order=OrderEcho(invoice_number=req.order.invoice_number, amount=req.order.amount),
                internet_banking_payment=InternetBankingPayment(status="SUCCESS"),
            )
        )

    def _check_additional_info(self, req: PaymentRequest, amount: int) -> tuple[ReportColumn, ...]:
        """Split Settlement and report columns: shapes, percentages <= 100, fixed parts <= net."""
        info = req.additional_info
        try:
            shares = msgspec.convert(info.get("settlement", []), tuple[SettlementShare, ...])
            report = msgspec.convert(info.get("report", []), tuple[ReportColumn, ...])
        except msgspec.ValidationError as exc:
            raise SandboxError("invalid_settlement", str(exc)) from exc
        percent = sum(s.value for s in shares if s.type == "PERCENTAGE")
        fixed = sum(s.value for s in shares if s.type == "FIX")
        net = amount - fee_for(amount, fee_bps=self.fee_bps, fee_fixed=self.fee_fixed)
        if any(s.value <= 0 for s in shares) or percent > 100 or fixed > net:
            raise SandboxError("invalid_settlement", "shares must be positive, <= 100 %, fixed <= net")
        return report

    def _create_refund(self, merchant: SandboxMerchant, request_id: str, body: bytes) -> tuple[int, bytes]:
        try:
            req = refund_request_decoder.decode(body)
        except msgspec.DecodeError as exc:
            return _refusal(SandboxError("invalid_body", str(exc)))
        amount = parse_amount_text(req.order.amount)
        if amount is None or amount == 0:
            return _refusal(SandboxError("invalid_amount", "a string of 1 to 12 digits, not zero"))
        key = (merchant.client_id, req.order.invoice_number)
        order = self._orders.get(key)
        if order is None:
            return _refusal(SandboxError("order_not_found"))
        if order.status != "SUCCESS":
            return _refusal(SandboxError("order_not_refundable", f"order is {order.status}"))
        if amount > order.amount - order.refunded:
            return _refusal(SandboxError("refund_exceeds_amount", f"{order.amount - order.refunded} left"))
        now = self._clock()
        refunds = (*order.refunds, Refund(request_id=request_id, amount=amount, reason=req.order.reason, at=now))
        full = sum(r.amount for r in refunds) == order.amount
        order = msgspec.structs.replace(order, refunds=refunds, status="REFUNDED" if full else order.status)
        self._orders[key] = order
        if full and self.notify_refunds:
            self._notifier.notify(order.client_id, self._notification(order, now))
        return 200, encoder.encode(
            PaymentResponse(
                order=OrderEcho(invoice_number=order.invoice_number, amount=req.order.amount),
                internet_banking_payment=InternetBankingPayment(status="SUCCESS"),
            )
        )

    def _status_of(self, reference: str) -> Handler:
        def answer(merchant: SandboxMerchant, request_id: str, body: bytes) -> tuple[int, bytes]:
            order = self._orders.get((merchant.client_id, reference)) or next(
                (o for o in self._orders.values() if o.client_id == merchant.client_id and o.request_id == reference),
                None,
            )
            if order is None:
                return _refusal(SandboxError("order_not_found"))
            at = order.captured_at or order.settled_at or order.created_at
            return 200, encoder.encode(
                StatusResponse(
                    service=Ref(id=SERVICE_ID),
                    acquirer=Ref(id=ACQUIRER_ID),
                    channel=Ref(id=CHANNEL_ID),
                    order=NotificationOrder(invoice_number=order.invoice_number, amount=order.amount),
                    transaction=Transaction(
                        status=order.status, date=signing.format_timestamp(at), original_request_id=order.request_id
                    ),
                )
            )

        return answer

    # --- the ASGI app -------------------------------------------------------------------------------

    def _build_app(self) -> Litestar:
        sandbox = self
        status_route = self.status_path_template.replace("{invoice_number}", "{invoice_number:path}")

        async def payment(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await sandbox._doku_call(request, sandbox._create_payment)

        async def refund(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await sandbox._doku_call(request, sandbox._create_refund)

        async def status(request: Request[Any, Any, Any], invoice_number: FromPath[str]) -> Response[bytes]:
            return await sandbox._doku_call(request, sandbox._status_of(invoice_number.lstrip("/")))

        async def list_orders() -> Response[bytes]:
            return _json(200, sandbox.orders())

        async def show_order(rest: FromPath[str], client_id: FromQuery[str | None] = None) -> Response[bytes]:
            key = sandbox._find(rest.lstrip("/"), client_id)
            return _json(200, _order_view(sandbox._orders[key], sandbox.deliveries(key[1])))

        async def act_on_order(rest: FromPath[str], client_id: FromQuery[str | None] = None) -> Response[bytes]:
            invoice_number, _, action = rest.lstrip("/").rpartition("/")
            if action == "resend":
                return _json(200, await sandbox.resend(invoice_number, client_id=client_id))
            if action not in OUTCOME_STATUS:
                raise SandboxError("not_found", f"no action {action!r}")
            order = sandbox._conclude(sandbox._find(invoice_number, client_id), action)
            return _json(200, order)

        async def flush() -> Response[bytes]:
            sandbox.flush_notifications()
            return _json(200, {"flushed": True})

        async def settlement(
            name: FromPath[str], client_id: FromQuery[str | None] = None, invoice_number: FromQuery[str | None] = None
        ) -> Response[bytes]:
            try:
                day = date.fromisoformat(name.removesuffix(".csv")) if name.endswith(".csv") else None
            except ValueError:
                day = None
            if day is None:
                raise SandboxError("not_found", "use /_sandbox/settlements/YYYY-MM-DD.csv")
            wanted = frozenset(invoice_number.split(",")) if invoice_number else None
            csv_text = sandbox.settlement_report_csv(day, client_id=client_id, invoice_numbers=wanted)
            return Response(content=csv_text.encode(), status_code=200, media_type="text/csv; charset=utf-8")

        async def show_faults() -> Response[bytes]:
            return _json(200, sandbox.faults)

        async def patch_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
            try:
                patch = msgspec.json.decode(await request.body(), type=dict[str, Any])
                merged = msgspec.convert({**msgspec.structs.asdict(sandbox.faults), **patch}, Faults)
            except msgspec.DecodeError as exc:  # ValidationError included
                raise SandboxError("invalid_body", str(exc)) from exc
            for field in Faults.__struct_fields__:
                setattr(sandbox.faults, field, getattr(merged, field))
            return _json(200, sandbox.faults)

        async def add_merchant(request: Request[Any, Any, Any]) -> Response[bytes]:
            try:
                merchant = msgspec.json.decode(await request.body(), type=SandboxMerchant)
            except msgspec.DecodeError as exc:
                raise SandboxError("invalid_body", str(exc)) from exc
            sandbox.add_merchant(merchant)
            return _json(201, {"client_id": merchant.client_id, "notification_url": merchant.notification_url})

        def on_startup() -> None:
            sandbox._closing = asyncio.Event()

        return Litestar(
            route_handlers=[
                post(self.payment_path)(payment),
                post(self.refund_path)(refund),
                get(status_route)(status),
                get("/_sandbox/orders")(list_orders),
                get("/_sandbox/orders/{rest:path}")(show_order),
                post("/_sandbox/orders/{rest:path}")(act_on_order),
                post("/_sandbox/notifications/flush")(flush),
                get("/_sandbox/settlements/{name:str}")(settlement),
                get("/_sandbox/faults")(show_faults),
                put("/_sandbox/faults")(patch_faults),
                post("/_sandbox/merchants")(add_merchant),
            ],
            exception_handlers={SandboxError: _sandbox_error, HTTPException: _http_error, Exception: _crash},
            on_startup=[on_startup],
            on_shutdown=[self.aclose],
            openapi_config=None,
            logging_config=None,
            debug=False,
        )


# --- answers ------------------------------------------------------------------------------------------


def _refusal(error: SandboxError) -> tuple[int, bytes]:
    return error.status, error_body(error.code, error.message)


def _plain(status: int, body: bytes) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type="application/json")


def _json(status: int, value: object) -> Response[bytes]:
    return _plain(status, encoder.encode(value))


class _DeliveryView(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    status: str
    url: str
    delivered: bool
    attempts: list[DeliveryAttempt]
    body: msgspec.Raw


class _OrderView(msgspec.Struct, frozen=True, kw_only=True):
    order: SandboxOrder
    deliveries: tuple[_DeliveryView, ...]


def _order_view(order: SandboxOrder, deliveries: Iterable[Delivery]) -> _OrderView:
    return _OrderView(
        order=order,
        deliveries=tuple(
            _DeliveryView(
                request_id=d.request_id,
                status=d.status,
                url=d.url,
                delivered=d.delivered,
                attempts=d.attempts,
                body=msgspec.Raw(d.body),
            )
            for d in deliveries
            if d.client_id == order.client_id
        ),
    )


def _sandbox_error(_: Request[Any, Any, Any], exc: SandboxError) -> Response[bytes]:
    return _plain(exc.status, error_body(exc.code, exc.message))


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc, NotFoundException):
        return _plain(404, error_body("not_found", "no such path"))
    if isinstance(exc, MethodNotAllowedException):
        return _plain(405, error_body("method_not_allowed", "method not allowed"))
    if exc.status_code < 500:
        return _plain(400, error_body("invalid_body", str(exc.detail)))
    return _plain(500, error_body("internal_error"))


def _crash(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("sandbox crashed", exc_info=exc)
    return _plain(500, error_body("internal_error"))


# --- serving ------------------------------------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside someone else's event loop: the host process keeps its signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_app(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` over real HTTP in the current event loop; yields the base URL."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                raise RuntimeError("uvicorn did not start") from task.exception()
            await asyncio.sleep(0.005)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(SystemExit):
            await task


@contextlib.asynccontextmanager
async def serve_sandbox(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``sandbox`` over real loopback HTTP; yields its base URL; shuts down cleanly."""
    async with serve_app(sandbox.app, host, port) as base_url:
        try:
            yield base_url
        finally:
            await sandbox.aclose()  # before uvicorn waits for connections: wakes hung answers


def parse_merchant(spec: str) -> SandboxMerchant:
    """``CLIENT_ID:SECRET_KEY[:NOTIFICATION_URL]`` (the URL may contain colons)."""
    client_id, _, rest = spec.partition(":")
    secret_key, _, url = rest.partition(":")
    if not client_id or not secret_key:
        raise ValueError(f"merchant spec {spec!r}: expected CLIENT_ID:SECRET_KEY[:NOTIFICATION_URL]")
    return SandboxMerchant(client_id=client_id, secret_key=secret_key, notification_url=url or None)


def run_sandbox(
    host: str = "127.0.0.1",
    port: int = 8070,
    *,
    merchants: Iterable[SandboxMerchant] = (),
    auto_approve_after_s: float | None = None,
    expire_after_s: float | None = None,
    retry_schedule_s: Sequence[float] = DOKU_RETRY_SCHEDULE_S,
    fee_bps: int = 100,
    fee_fixed: int = 2_000,
) -> None:
    """Blocking standalone DOKU sandbox (``splitledger sandbox``). Merchants also come from
    ``SPLITLEDGER_SANDBOX_MERCHANTS`` (``;``-separated ``CLIENT_ID:SECRET_KEY[:URL]``)."""
    env = [parse_merchant(spec) for spec in os.environ.get(MERCHANTS_ENV, "").split(";") if spec.strip()]
    sandbox = Sandbox(
        merchants=[*env, *merchants],
        auto_approve_after_s=auto_approve_after_s,
        expire_after_s=expire_after_s,
        retry_schedule_s=retry_schedule_s,
        fee_bps=fee_bps,
        fee_fixed=fee_fixed,
    )
    base = f"http://{host}:{port}"
    print(f"DOKU Jenius sandbox on {base}")
    print(f"  payment  POST {base}{sandbox.payment_path}")
    print(f"  refund   POST {base}{sandbox.refund_path}")
    print(f"  status   GET  {base}{sandbox.status_path_template}")
    print(f"  control  {base}/_sandbox/orders/{{invoice}}/approve|decline|expire|resend, /_sandbox/faults")
    print(f"  reports  GET  {base}/_sandbox/settlements/YYYY-MM-DD.csv (fee {fee_bps} bps + {fee_fixed} IDR)")
    for merchant in sandbox.merchants:
        print(f"  merchant {merchant.client_id} -> notifications to {merchant.notification_url or '(none)'}")
    if not sandbox.merchants:
        print(f"  no merchants yet: POST {base}/_sandbox/merchants or set {MERCHANTS_ENV}")
    if auto_approve_after_s is not None:
        print(f"  customers approve by themselves after {auto_approve_after_s:g} s")
    print(f"  notification retries after {', '.join(f'{s:g}' for s in retry_schedule_s)} s")
    uvicorn.Server(uvicorn.Config(sandbox.app, host=host, port=port, log_level="info")).run()


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="splitledger sandbox", description="Simulated DOKU Jenius")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8070)
    parser.add_argument("--merchant", action="append", default=[], metavar="CLIENT_ID:SECRET_KEY[:NOTIFICATION_URL]")
    parser.add_argument("--auto-approve-after", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--expire-after", type=float, default=None, metavar="SECONDS")
    parser.add_argument(
        "--retry-schedule",
        default=",".join(f"{s:g}" for s in DOKU_RETRY_SCHEDULE_S),
        metavar="S,S,S",
        help="seconds between notification attempts (DOKU: 1800,21600,43200)",
    )
    parser.add_argument("--fee-bps", type=int, default=100)
    parser.add_argument("--fee-fixed", type=int, default=2_000)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_arg_parser().parse_args(argv)
    run_from_args(args)


def run_from_args(args: argparse.Namespace) -> None:
    run_sandbox(
        args.host,
        args.port,
        merchants=[parse_merchant(spec) for spec in args.merchant],
        auto_approve_after_s=args.auto_approve_after,
        expire_after_s=args.expire_after,
        retry_schedule_s=tuple(float(s) for s in args.retry_schedule.split(",") if s.strip()),
        fee_bps=args.fee_bps,
        fee_fixed=args.fee_fixed,
    )


if __name__ == "__main__":
    main()
