"""DOKU's HTTP notifications: verify, keep every delivery in the inbox, capture exactly once.

Rules: the platform is found by the notification's ``Client-Id``; the signature is checked over
the raw bytes with the path of our own notification URL as Request-Target; every delivery — good,
duplicate, forged or malformed — is kept in ``notifications`` with its outcome; a SUCCESS goes
through the one capture path (group-committed, idempotent by ``capture:<invoice>``); mismatches
are never posted but become reconciliation exceptions; DOKU gets a 2xx as soon as that is done.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from api.gateways import gateway_for_client_id
from api.metrics import METRICS
from api.payments import apply_transaction_status
from jenius import errors as jerrors
from jenius.client import header, verify_notification
from jenius.messages import decode_notification

log = logging.getLogger("splitledger.notifications")


class NotificationAck(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    outcome: str


async def _keep(services: Any, platform_id: str, *, request_id: str | None, invoice: str | None,
                status: str | None, amount: int | None, body: bytes, outcome: str, detail: str | None = None) -> None:
    await services.pool.execute(
        """
        INSERT INTO notifications (platform_id, request_id, invoice_number, transaction_status, amount, body,
                                   outcome, detail)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        platform_id, request_id, invoice, status, amount, body, outcome, detail,
    )


def _invoice_of(body: bytes) -> str | None:
    try:
        return decode_notification(body).order.invoice_number
    except jerrors.JeniusError:
        return None


async def _check_later(services: Any, platform_id: str, invoice: str) -> None:
    from api.payments import check_order_status

    async def run() -> None:
        try:
            await check_order_status(services, platform_id, invoice)
        except Exception:  # noqa: BLE001 - the background status checker will try again
            log.exception("status check after a stale notification failed", extra={"invoice_number": invoice})

    tasks = services.extras.setdefault("background", set())
    task = asyncio.create_task(run())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def receive_notification(services: Any, headers: dict[str, str], body: bytes) -> tuple[str, str | None]:
    """Handle one delivery; returns ``(outcome, error_code)`` where error_code means "answer non-2xx"."""
    client_id = header(headers, "Client-Id")
    gateway = await gateway_for_client_id(services.pool, client_id) if client_id else None
    if gateway is None:
        METRICS.count("notifications", "unknown_client_id")
        log.warning("notification for an unknown Client-Id", extra={"client_id": client_id})
        return "unknown_client_id", "unknown_client_id"
    request_id = header(headers, "Request-Id")
    settings = services.settings
    max_age = timedelta(seconds=settings.notification_max_age_s) if settings.notification_max_age_s else None
    try:
        notification = verify_notification(
            headers=headers,
            body=body,
            secret_key=gateway.secret_key,
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
                await _check_later(services, gateway.platform_id, invoice)
        await _keep(services, gateway.platform_id, request_id=request_id, invoice=invoice, status=None, amount=None,
                    body=body, outcome=exc.code, detail=str(exc))
        return exc.code, exc.code
    invoice = notification.order.invoice_number
    amount = int(notification.order.amount)
    status = notification.transaction.status
    outcome = await apply_transaction_status(
        services, gateway.platform_id, invoice, amount, status, notification.transaction.date, "notification"
    )
    METRICS.count("notifications", outcome)
    await _keep(services, gateway.platform_id, request_id=request_id, invoice=invoice, status=status, amount=amount,
                body=body, outcome=outcome)
    return outcome, None
