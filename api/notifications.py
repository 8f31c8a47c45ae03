"""DOKU's HTTP notifications: verify, keep every delivery in the inbox, capture exactly once.

Rules: the platform is found by the notification's ``Client-Id``; the signature is checked over
the raw bytes with the path of our own notification URL as Request-Target; every delivery — good,
duplicate, forged or malformed — is kept in the inbox with its outcome; a SUCCESS goes through the
one capture path (group-committed, idempotent by ``capture:<invoice>``); mismatches are never posted
but become reconciliation exceptions; a status that contradicts the order's (a ``conflict``) moves no
money, becomes a ``status_conflict`` exception and makes us ask DOKU for the status; DOKU gets a 2xx
as soon as that is done. With the database down the answer is 503, so DOKU delivers again later.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import msgspec

from api.metrics import METRICS
from api.services import Services
from jenius import errors as jerrors
from jenius.client import header, verify_notification
from jenius.messages import decode_notification
from ledger.service import gateways, orders
from ledger.store.inbox import Delivery

log = logging.getLogger("splitledger.notifications")


class NotificationAck(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    outcome: str


def _invoice_of(body: bytes) -> str | None:
    try:
        return decode_notification(body).order.invoice_number
    except jerrors.JeniusError:
        return None


async def _keep(services: Services, platform_id: str, delivery: Delivery) -> None:
    await services.db.transaction(lambda uow: uow.inbox.keep(platform_id, delivery))


async def receive_notification(services: Services, headers: Mapping[str, str], body: bytes) -> tuple[str, str | None]:
    """Handle one delivery; returns ``(outcome, error_code)`` where error_code means "answer non-2xx"."""
    client_id = header(headers, "Client-Id")
    gateway = await gateways.gateway_for_client_id(services.db, client_id) if client_id else None
    if gateway is None:
        METRICS.count("notifications", "unknown_client_id")
        log.warning("notification for an unknown Client-Id", extra={"client_id": client_id})
        return "unknown_client_id", "unknown_client_id"
    platform_id = gateway.platform_id
    request_id = header(headers, "Request-Id")
    settings = services.settings
    max_age = timedelta(seconds=settings.notification_max_age_s) if settings.notification_max_age_s else None
    try:
        notification = verify_notification(
            headers=headers,
            body=body,
            secret_key=gateway.secret_key.reveal(),
            notification_path=settings.notification_path,
            now=datetime.now(UTC),
            max_age=max_age,
        )
    except jerrors.JeniusError as exc:
        METRICS.count("notifications", exc.code)
        invoice = None
        if isinstance(exc, jerrors.StaleTimestamp):
            # The signature held, only the clock did not: ask DOKU itself instead of trusting the body.
            invoice = _invoice_of(body)
            if invoice is not None:
                stale_invoice = invoice
                services.background.spawn(
                    lambda: _check(services, platform_id, stale_invoice), f"status-check-{stale_invoice}"
                )
        await _keep(
            services,
            platform_id,
            Delivery(
                request_id=request_id,
                invoice_number=invoice,
                transaction_status=None,
                amount=None,
                body=body,
                outcome=exc.code,
                detail=str(exc),
            ),
        )
        return exc.code, exc.code
    invoice_number = notification.order.invoice_number
    amount = int(notification.order.amount)
    status = notification.transaction.status
    outcome = await orders.apply_payment_status(
        services.db,
        services.batcher,
        platform_id,
        invoice_number,
        amount,
        status,
        notification.transaction.date,
        "notification",
    )
    METRICS.count("notifications", outcome)
    if outcome in ("captured", "duplicate", "amount_mismatch", "unknown_invoice"):
        METRICS.count("captures", outcome)
    if outcome == "conflict":
        # DOKU contradicted itself: ask it (the answer becomes evidence on the exception).
        services.background.spawn(
            lambda: _check(services, platform_id, invoice_number), f"status-check-{invoice_number}"
        )
    await _keep(
        services,
        platform_id,
        Delivery(
            request_id=request_id,
            invoice_number=invoice_number,
            transaction_status=status,
            amount=amount,
            body=body,
            outcome=outcome,
        ),
    )
    return outcome, None


async def _check(services: Services, platform_id: str, invoice_number: str) -> None:
    await orders.check_order_status(
        services.db, services.doku, services.batcher, services.plain(platform_id), platform_id, invoice_number
    )
