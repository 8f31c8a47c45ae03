"""DOKU Jenius wire messages: frozen msgspec Structs and one Decoder per message, built once.

Rules this module enforces:
- Field order is wire order: ``msgspec.json.encode(PaymentRequest(...))`` yields DOKU's sample bytes
  exactly (the signing test vector is checked against it).
- Money is an ``int`` of whole rupiah in Python. On the wire ``order.amount`` is a *string* in
  requests (and in DOKU's payment/refund answers) and a *number* in notifications and status
  answers; decoders accept either and ``amount_idr`` normalises, never through a float.
- What DOKU sends us is decoded leniently: unknown keys are ignored (DOKU adds fields), numbers may
  arrive as strings. What we send is encoded strictly.
- Lenient is not defenceless: a notification nested deeper than ``MAX_NOTIFICATION_DEPTH``, not
  UTF-8, or with a control character in the text we keep is ``MalformedMessage``, never a crash.
- Business rules on a payment request (amount range, line items summing to the amount, invoice
  length, cashtag) come back as data from :func:`payment_request_problems`, all of them at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta

from jenius.errors import MalformedMessage

# Jenius limits per a third-party payment-method directory, not DOKU itself [unconfirmed].
MIN_AMOUNT_IDR = 10_000
MAX_AMOUNT_IDR = 100_000_000
MAX_INVOICE_NUMBER_LENGTH = 64
MAX_REQUEST_ID_LENGTH = 128

TransactionStatus = Literal["PENDING", "SUCCESS", "FAILED", "EXPIRED", "REFUNDED", "TIMEOUT", "REDIRECT"]
TRANSACTION_STATUSES: frozenset[str] = frozenset(get_args(TransactionStatus))

_AMOUNT_TEXT = re.compile(r"[0-9]{1,12}")
MAX_NOTIFICATION_DEPTH = 32
# The same rule as ledger.text (jenius does not import ledger): no C0 except tab/LF/CR, no DEL, no C1.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A JSON string skipped whole (so brackets inside it do not count), or one bracket.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')
_CASH_TAG = re.compile(r"\$[A-Za-z0-9_.]{1,40}")

NonNegativeAmount = Annotated[int, Meta(ge=0, le=999_999_999_999)]


class Wire(msgspec.Struct, frozen=True, kw_only=True):
    """Base for every wire message: immutable and keyword-only.

    Each subclass restates both: msgspec does not inherit ``kw_only``, and type checkers read a
    subclass without ``frozen=True`` as mutable (msgspec itself inherits it).
    """


# --- payment request (merchant -> DOKU) ------------------------------------------------------------


class LineItem(Wire, frozen=True, kw_only=True):
    name: str
    price: int
    quantity: int


class OrderRequest(Wire, frozen=True, kw_only=True):
    invoice_number: str
    amount: str  # whole rupiah as a string of <= 12 digits
    line_items: tuple[LineItem, ...] = ()


class Customer(Wire, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    email: str
    phone: str | None = None


class JeniusInfo(Wire, frozen=True, kw_only=True):
    cash_tag: str


class PaymentRequest(Wire, frozen=True, kw_only=True):
    order: OrderRequest
    additional_info: dict[str, Any] = {}
    customer: Customer
    redirect_url: str
    jenius_info: JeniusInfo


class SettlementShare(Wire, frozen=True, kw_only=True):
    """One payee of DOKU's Split Settlement; ``value`` is percent (PERCENTAGE) or rupiah (FIX)."""

    bank_account_settlement_id: str
    value: int
    type: Literal["PERCENTAGE", "FIX"]


class ReportColumn(Wire, frozen=True, kw_only=True):
    """An extra column in DOKU's settlement report (``additional_info.report[]``)."""

    key: str
    value: str


def build_payment_request(
    *,
    invoice_number: str,
    amount: int,
    line_items: tuple[LineItem, ...],
    customer: Customer,
    redirect_url: str,
    cash_tag: str,
    settlement: tuple[SettlementShare, ...] = (),
    hold_settlement: bool = False,
    report: tuple[ReportColumn, ...] = (),
) -> PaymentRequest:
    """A payment request from integer rupiah; ``additional_info`` carries only what is set."""
    if type(amount) is not int:
        raise TypeError("amount must be an int of rupiah")
    info: dict[str, Any] = {}
    if settlement:
        info["settlement"] = [msgspec.to_builtins(share) for share in settlement]
    if hold_settlement:
        info["hold_settlement"] = True
    if report:
        info["report"] = [msgspec.to_builtins(column) for column in report]
    return PaymentRequest(
        order=OrderRequest(invoice_number=invoice_number, amount=str(amount), line_items=line_items),
        additional_info=info,
        customer=customer,
        redirect_url=redirect_url,
        jenius_info=JeniusInfo(cash_tag=cash_tag),
    )


class Problem(Wire, frozen=True, kw_only=True):
    """One broken rule: a stable ``code`` and a human ``detail``."""

    code: str
    detail: str


def payment_request_problems(
    req: PaymentRequest, *, min_amount: int = MIN_AMOUNT_IDR, max_amount: int = MAX_AMOUNT_IDR
) -> tuple[Problem, ...]:
    """Every rule ``req`` breaks, most fundamental first; empty when DOKU should accept it."""
    problems: list[Problem] = []
    invoice = req.order.invoice_number
    if not invoice or len(invoice) > MAX_INVOICE_NUMBER_LENGTH:
        problems.append(Problem(code="invalid_invoice_number", detail="1 to 64 characters"))
    amount = parse_amount_text(req.order.amount)
    if amount is None:
        problems.append(Problem(code="invalid_amount", detail="a string of 1 to 12 digits"))
    elif not min_amount <= amount <= max_amount:
        problems.append(Problem(code="amount_out_of_range", detail=f"between {min_amount} and {max_amount}"))
    if any(item.price < 0 or item.quantity < 1 for item in req.order.line_items):
        problems.append(Problem(code="invalid_line_items", detail="price >= 0, quantity >= 1"))
    elif req.order.line_items and amount is not None:
        total = sum(item.price * item.quantity for item in req.order.line_items)
        if total != amount:
            problems.append(Problem(code="line_items_mismatch", detail=f"line items sum to {total}, not {amount}"))
    if not _CASH_TAG.fullmatch(req.jenius_info.cash_tag):
        problems.append(Problem(code="invalid_cash_tag", detail="a $-prefixed Jenius cashtag"))
    if not req.redirect_url:
        problems.append(Problem(code="invalid_redirect_url", detail="required"))
    return tuple(problems)


def parse_amount_text(text: str) -> int | None:
    """Whole rupiah from DOKU's string form, or None when it is not 1-12 ASCII digits."""
    return int(text) if _AMOUNT_TEXT.fullmatch(text) else None


# --- refund request (merchant -> DOKU) [path and exact shape unconfirmed] ---------------------------


class RefundOrder(Wire, frozen=True, kw_only=True):
    invoice_number: str
    amount: str  # same string form as the payment request
    reason: str


class RefundRequest(Wire, frozen=True, kw_only=True):
    order: RefundOrder


# --- DOKU's answers to payment and refund -------------------------------------------------------------


class OrderEcho(Wire, frozen=True, kw_only=True):
    invoice_number: str
    amount: str | int  # DOKU's sample answers with a string; accept a number too

    @property
    def amount_idr(self) -> int:
        if isinstance(self.amount, int):
            if self.amount < 0:
                raise MalformedMessage("negative amount")
            return self.amount
        parsed = parse_amount_text(self.amount)
        if parsed is None:
            raise MalformedMessage("order.amount is not whole rupiah")
        return parsed


class InternetBankingPayment(Wire, frozen=True, kw_only=True):
    status: str


class PaymentResponse(Wire, frozen=True, kw_only=True):
    order: OrderEcho
    internet_banking_payment: InternetBankingPayment


RefundResponse = PaymentResponse


# --- notifications (DOKU -> merchant) and status answers ----------------------------------------------


class Ref(Wire, frozen=True, kw_only=True):
    id: str


class NotificationOrder(Wire, frozen=True, kw_only=True):
    invoice_number: str
    amount: NonNegativeAmount  # a JSON number; decoded leniently (a string or 50000.00 also pass)


class Transaction(Wire, frozen=True, kw_only=True, omit_defaults=True):
    status: str
    date: str | None = None
    original_request_id: str | None = None


class Notification(Wire, frozen=True, kw_only=True, omit_defaults=True):
    service: Ref | None = None
    acquirer: Ref | None = None
    channel: Ref | None = None
    order: NotificationOrder
    transaction: Transaction


class StatusResponse(Wire, frozen=True, kw_only=True, omit_defaults=True):
    """Answer of ``GET /orders/v1/status/{invoice_number}``: the notification's shape."""

    service: Ref | None = None
    acquirer: Ref | None = None
    channel: Ref | None = None
    order: NotificationOrder
    transaction: Transaction


# --- DOKU-shaped error answers ----------------------------------------------------------------------


class ErrorDetail(Wire, frozen=True, kw_only=True, omit_defaults=True):
    code: str | None = None
    message: Any = None
    type: str | None = None


class ErrorAnswer(Wire, frozen=True, kw_only=True):
    """``{"error": {"code": "...", "message": "...", "type": "..."}}``."""

    error: ErrorDetail


# --- decoders, one per message, built once --------------------------------------------------------

payment_request_decoder = msgspec.json.Decoder(PaymentRequest)
refund_request_decoder = msgspec.json.Decoder(RefundRequest)
payment_response_decoder = msgspec.json.Decoder(PaymentResponse)
refund_response_decoder = payment_response_decoder
status_response_decoder = msgspec.json.Decoder(StatusResponse, strict=False)
notification_decoder = msgspec.json.Decoder(Notification, strict=False)
error_answer_decoder = msgspec.json.Decoder(ErrorAnswer)
encoder = msgspec.json.Encoder()


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """True when arrays and objects in the JSON ``body`` nest deeper than ``limit`` (strings skipped).

    Decoders recurse per level: a body of 100,000 brackets must be refused before it is decoded.
    Counting the brackets first keeps the common case (a small body) to one pass in C.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for token in _JSON_TOKEN.finditer(body):
        first = token.group()[0]
        if first in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif first in b"]}":
            depth -= 1
    return False


def decode_notification(body: bytes) -> Notification:
    """The notification in ``body``; :class:`MalformedMessage` when it is not one."""
    if json_nesting_exceeds(body, MAX_NOTIFICATION_DEPTH):
        raise MalformedMessage(f"nested deeper than {MAX_NOTIFICATION_DEPTH} levels")
    try:
        notification = notification_decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise MalformedMessage(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"not UTF-8 (byte {exc.start})") from exc
    except RecursionError as exc:
        raise MalformedMessage("nested too deep") from exc
    kept = (
        notification.order.invoice_number,
        notification.transaction.status,
        notification.transaction.date or "",
        notification.transaction.original_request_id or "",
    )
    if any(_CONTROL.search(text) for text in kept):
        raise MalformedMessage("a control character in the notification's text")
    return notification


def decode_error_answer(body: bytes) -> ErrorDetail | None:
    """DOKU's ``error`` object when ``body`` is error-shaped, else None."""
    try:
        return error_answer_decoder.decode(body).error
    except msgspec.DecodeError:
        return None
