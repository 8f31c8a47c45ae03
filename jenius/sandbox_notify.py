"""How the simulated DOKU delivers HTTP notifications, and the background tasks it runs.

Rules:
- A notification is POSTed to the merchant's notification URL with DOKU's headers (Client-Id,
  Request-Id, Request-Timestamp, Signature), signed with ``Request-Target`` = that URL's path and the
  digest of the exact bytes sent.
- Anything but a 2xx is a failed attempt; DOKU then tries again after each delay of the retry
  schedule in turn (default +30 min, +6 h, +12 h, each counted from the previous attempt).
- Automatic retries keep the notification's Request-Id and body and are re-signed with a fresh
  timestamp; a manual resend is a new notification (new Request-Id) with the same body. Merchants
  must therefore deduplicate on content (``transaction.original_request_id`` + status), not on the
  notification's Request-Id. Whether real DOKU behaves this way is [unconfirmed].
- Every task started here is tracked, cancelled and awaited on close.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from jenius import signing
from jenius.messages import Notification, encoder
from jenius.sandbox_model import Delivery, DeliveryAttempt, Faults, SandboxMerchant

log = logging.getLogger("splitledger.jenius.sandbox")

DOKU_RETRY_SCHEDULE_S = (1800.0, 21600.0, 43200.0)


class BackgroundTasks:
    """A set of tasks that are all cancelled and awaited on :meth:`aclose`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sandbox background task failed", exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float) -> None:
        """Wait until no task is left (tasks may start others); TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        while self._tasks:
            tasks = set(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def notification_headers(
    *, merchant: SandboxMerchant, request_id: str, body: bytes, now: datetime, secret_key: str | None = None
) -> dict[str, str]:
    """DOKU's headers for ``body`` sent to ``merchant.notification_url``."""
    assert merchant.notification_url is not None
    timestamp = signing.format_timestamp(now)
    target = urlsplit(merchant.notification_url).path or "/"
    return {
        "Content-Type": "application/json",
        "Client-Id": merchant.client_id,
        "Request-Id": request_id,
        "Request-Timestamp": timestamp,
        "Signature": signing.sign(
            secret_key=secret_key or merchant.secret_key,
            client_id=merchant.client_id,
            request_id=request_id,
            timestamp=timestamp,
            target=target,
            body=body,
        ),
    }


class Notifier:
    def __init__(
        self,
        *,
        faults: Faults,
        tasks: BackgroundTasks,
        merchant: Callable[[str], SandboxMerchant | None],
        clock: Callable[[], datetime],
        retry_schedule_s: tuple[float, ...] = DOKU_RETRY_SCHEDULE_S,
        timeout_s: float = 5.0,
    ) -> None:
        self._faults = faults
        self._tasks = tasks
        self._merchant = merchant
        self._clock = clock
        self._schedule = tuple(retry_schedule_s)
        self._timeout_s = timeout_s
        self._held: Delivery | None = None
        self._http: httpx.AsyncClient | None = None
        self.deliveries: list[Delivery] = []

    def notify(self, client_id: str, notification: Notification) -> Delivery | None:
        """Start delivering ``notification``; None when the merchant has no notification URL."""
        merchant = self._merchant(client_id)
        if merchant is None or merchant.notification_url is None:
            return None
        delivery = Delivery(
            request_id=str(uuid.uuid4()),
            client_id=client_id,
            invoice_number=notification.order.invoice_number,
            status=notification.transaction.status,
            url=merchant.notification_url,
            body=encoder.encode(notification),
        )
        self.deliveries.append(delivery)
        if not self._faults.reorder_notifications:
            self._tasks.spawn(self._deliver([delivery]))
        elif self._held is None:
            self._held = delivery
        else:
            held, self._held = self._held, None
            self._tasks.spawn(self._deliver([delivery, held]))  # newest first
        return delivery

    def flush(self) -> None:
        """Release a notification held back by ``reorder_notifications``."""
        if self._held is not None:
            held, self._held = self._held, None
            self._tasks.spawn(self._deliver([held]))

    async def resend(self, original: Delivery) -> DeliveryAttempt:
        """One immediate manual attempt of ``original``'s body, as a new notification."""
        copy = Delivery(
            request_id=str(uuid.uuid4()),
            client_id=original.client_id,
            invoice_number=original.invoice_number,
            status=original.status,
            url=original.url,
            body=original.body,
        )
        self.deliveries.append(copy)
        return await self._attempt(copy, manual=True)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _deliver(self, deliveries: list[Delivery]) -> None:
        # First attempts go out in the given order; each failure then follows its own schedule.
        for delivery in deliveries:
            attempt = await self._attempt(delivery)
            if attempt.outcome != "delivered":
                self._tasks.spawn(self._retry(delivery))

    async def _retry(self, delivery: Delivery) -> None:
        for delay in self._schedule:
            await asyncio.sleep(delay)
            if (await self._attempt(delivery)).outcome == "delivered":
                return
        log.warning(
            "notification %s for %s gave up after %d attempts",
            delivery.request_id,
            delivery.invoice_number,
            len(delivery.attempts),
        )

    async def _attempt(self, delivery: Delivery, *, manual: bool = False) -> DeliveryAttempt:
        merchant = self._merchant(delivery.client_id)
        now = self._clock()
        if merchant is None or merchant.notification_url is None:
            return self._record(delivery, now, None, "error", manual)
        delivery.url = merchant.notification_url
        if self._faults.drop_notifications > 0:
            self._faults.drop_notifications -= 1
            return self._record(delivery, now, None, "dropped", manual)
        wrong_key = merchant.secret_key + "-wrong" if self._faults.bad_notification_signature else None
        headers = notification_headers(
            merchant=merchant, request_id=delivery.request_id, body=delivery.body, now=now, secret_key=wrong_key
        )
        copies = 2 if self._faults.duplicate_notifications else 1
        status_codes: list[int | None] = []
        for _ in range(copies):
            status_codes.append(await self._post(delivery.url, delivery.body, headers))
        status_code = status_codes[0]
        if status_code is None:
            return self._record(delivery, now, None, "error", manual)
        outcome = "delivered" if 200 <= status_code < 300 else "rejected"
        return self._record(delivery, now, status_code, outcome, manual)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        if self._http is None:
            # trust_env=False: a proxy from the environment must not swallow loopback deliveries.
            self._http = httpx.AsyncClient(timeout=self._timeout_s, trust_env=False)
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.info("notification to %s failed: %s", url, exc)
            return None
        return response.status_code

    @staticmethod
    def _record(
        delivery: Delivery, now: datetime, status_code: int | None, outcome: Any, manual: bool
    ) -> DeliveryAttempt:
        attempt = DeliveryAttempt(
            at=now, request_id=delivery.request_id, status_code=status_code, outcome=outcome, manual=manual
        )
        delivery.attempts.append(attempt)
        return attempt
