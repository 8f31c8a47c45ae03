"""The simulated DOKU's records: merchants, orders, fault knobs and DOKU-shaped error answers.

Rule: an order moves only along DOKU's status graph, and every answer the sandbox refuses a request
with is one of the codes in ``ERRORS`` with the HTTP status and ``type`` given there.

Error answer shape (DOKU non-SNAP style; exact codes are the sandbox's own, DOKU's are
[unconfirmed]), always ``Content-Type: application/json``::

    {"error": {"code": "invalid_signature", "message": "<human text>", "type": "unauthorized"}}
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from jenius.messages import ErrorAnswer, ErrorDetail, encoder

OrderStatus = Literal["PENDING", "SUCCESS", "FAILED", "EXPIRED", "REFUNDED"]

# Customer outcomes in the Jenius app; each may only leave PENDING.
OUTCOME_STATUS: dict[str, OrderStatus] = {"approve": "SUCCESS", "decline": "FAILED", "expire": "EXPIRED"}

# code -> (HTTP status, DOKU-style error type)
ERRORS: dict[str, tuple[int, str]] = {
    # headers and authentication
    "invalid_header": (400, "invalid_header_request"),
    "invalid_client_id": (401, "unauthorized"),
    "invalid_signature": (401, "unauthorized"),
    "invalid_timestamp": (401, "unauthorized"),
    # body
    "invalid_body": (400, "invalid_request_body"),
    "invalid_invoice_number": (400, "invalid_parameter"),
    "invalid_amount": (400, "invalid_parameter"),
    "amount_out_of_range": (400, "invalid_parameter"),
    "invalid_line_items": (400, "invalid_parameter"),
    "line_items_mismatch": (400, "invalid_parameter"),
    "invalid_cash_tag": (400, "invalid_parameter"),
    "invalid_redirect_url": (400, "invalid_parameter"),
    "invalid_settlement": (400, "invalid_parameter"),
    "duplicate_invoice_number": (400, "invalid_parameter"),
    "refund_exceeds_amount": (400, "invalid_parameter"),
    # state
    "order_not_found": (404, "not_found"),
    "order_not_refundable": (400, "invalid_state"),
    "order_not_pending": (409, "invalid_state"),
    "ambiguous_invoice_number": (409, "conflict"),
    "duplicate_request_id": (409, "conflict"),
    # routing and server
    "not_found": (404, "not_found"),
    "method_not_allowed": (405, "not_found"),
    "service_unavailable": (503, "server_error"),
    "internal_error": (500, "server_error"),
}


class SandboxError(Exception):
    """A refusal with one of the ``ERRORS`` codes (also raised by the control methods)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code
        self.status = ERRORS[code][0]


def error_body(code: str, message: str = "") -> bytes:
    return encoder.encode(ErrorAnswer(error=ErrorDetail(code=code, message=message or code, type=ERRORS[code][1])))


class SandboxMerchant(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    secret_key: str
    notification_url: str | None = None  # None: this merchant receives no notifications

    def __repr__(self) -> str:
        return f"SandboxMerchant(client_id={self.client_id!r}, notification_url={self.notification_url!r})"


class Faults(msgspec.Struct, kw_only=True):
    """Mutable fault knobs; counters (``*_next``, ``drop_notifications``) count down as they fire."""

    latency_s: float = 0.0  # added before every DOKU API answer
    fail_5xx_next: int = 0  # the next N DOKU API calls answer ``fail_5xx_status`` before any processing
    fail_5xx_status: int = 503
    timeout_next: int = 0  # the next N calls are processed, then the answer hangs ``timeout_hang_s``
    timeout_hang_s: float = 30.0  # (the answer is lost: the client must time out and retry)
    bad_response_signature: bool = False  # sign answers with a wrong key
    drop_notifications: int = 0  # the next N delivery attempts are lost (count as failed attempts)
    duplicate_notifications: bool = False  # every delivery attempt is sent twice, same bytes
    reorder_notifications: bool = False  # hold each notification until the next one, then send newest first
    bad_notification_signature: bool = False  # sign notifications with a wrong key


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    amount: int
    reason: str
    at: datetime


class SandboxOrder(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    invoice_number: str
    amount: int
    request_id: str  # Request-Id of the payment request (the notification's original_request_id)
    status: OrderStatus
    created_at: datetime
    captured_at: datetime | None = None
    settled_at: datetime | None = None  # when FAILED or EXPIRED
    refunds: tuple[Refund, ...] = ()
    report_columns: tuple[tuple[str, str], ...] = ()  # additional_info.report[] key/value pairs

    @property
    def refunded(self) -> int:
        return sum(refund.amount for refund in self.refunds)


class DeliveryAttempt(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    request_id: str
    status_code: int | None  # the merchant's HTTP status; None when nothing came back
    outcome: Literal["delivered", "rejected", "error", "dropped"]
    manual: bool = False


class Delivery(msgspec.Struct, kw_only=True):
    """One notification and what happened to it. Mutable: attempts accumulate."""

    request_id: str
    client_id: str
    invoice_number: str
    status: str
    url: str
    body: bytes
    attempts: list[DeliveryAttempt] = msgspec.field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return any(attempt.outcome == "delivered" for attempt in self.attempts)
