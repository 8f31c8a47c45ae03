"""The port to the payment gateway (DOKU Jenius): what the use cases need of it, nothing of its wire.

The adapter (``api.doku``) speaks DOKU's signed HTTP; a test hands the use cases any object with
these methods. Outcomes are data, not exceptions: a gateway that refused and a gateway that could not
be reached are both normal days.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from ledger.orders import Order, OrderDraft
from ledger.refunds import Refund
from ledger.split import Allocation
from ledger.store.gateways import Gateway


class Delivered(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway accepted the request (or had accepted it before: same Request-Id)."""


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway answered no: final for this request."""

    code: str
    detail: str
    gateway_code: str | None = None


class Unreachable(msgspec.Struct, frozen=True, kw_only=True):
    """No answer (timeout, 5xx, bad signature): retry later with the same Request-Id."""

    code: str
    detail: str


Outcome = Delivered | Refused | Unreachable


class PaymentStatus(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    amount: int
    status: str  # SUCCESS, FAILED, EXPIRED, PENDING, …
    date: str | None = None


class PaymentGateway(Protocol):
    def payment_request(
        self, gateway: Gateway, draft: OrderDraft, allocation: Allocation, bank_ids: Mapping[str, str], platform_id: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The request document the gateway will be sent (stored with the order) and its rule problems."""
        ...

    async def request_payment(self, gateway: Gateway, order: Order) -> Outcome: ...

    async def refund(self, gateway: Gateway, refund: Refund) -> Outcome: ...

    async def check_status(self, gateway: Gateway, invoice_number: str) -> PaymentStatus | Unreachable: ...

    def base_urls(self) -> set[str]: ...
