"""Webhook endpoints and the relay that delivers the outbox to them, at least once.

Rules:
* An endpoint subscribes to event types (or ``["*"]``) and receives the events committed after it
  was created; its secret is generated here and shown once, in the answer to its creation.
* The relay runs in the background, never on a request's path. Each round claims due deliveries
  under a lease (``ledger.store.webhooks``), POSTs them outside any transaction through the
  ``WebhookSender`` port, and records each attempt in its own transaction. State lives in the
  database only: a process killed at any point leaves deliveries pending (or leased, until the
  lease lapses), and any relay, after a restart, sends them.
* A 2xx answer is delivered; anything else (another status, a timeout, no connection) is retried on
  ``ledger.webhooks``' schedule; the attempt that fails once the retry window (3 days) is over
  fails the delivery, disables the endpoint and writes ``webhook_endpoint.disabled``.
* Deliveries of one chain (an order and its refunds, …) reach an endpoint in order: the next one is
  claimed only after the previous one was delivered, however slow the receiver; other chains go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from datetime import timedelta
from typing import Protocol

import msgspec

from ledger import errors
from ledger import events as ev
from ledger import webhooks as rules
from ledger.service.faults import NO_FAULTS, Faults
from ledger.service.idempotency import Keyed
from ledger.store.database import Database, UnitOfWork
from ledger.store.webhooks import Claimed
from ledger.webhooks import CreatedEndpoint, Delivery, WebhookEndpoint

log = logging.getLogger("splitledger.webhooks")

MAX_ENDPOINTS = 20


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the receiver did: an HTTP status, or why there was none."""

    status: int | None = None
    error: str | None = None


class WebhookSender(Protocol):
    """The port to the receivers (the adapter speaks HTTP: ``api.webhook_sender``)."""

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult: ...


class EndpointDraft(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    events: list[str]


# -- endpoints -----------------------------------------------------------------------------


async def create_endpoint(
    db: Database, keyed: Keyed, platform_id: str, draft: EndpointDraft, *, allow_loopback: bool
) -> CreatedEndpoint:
    url = rules.check_url(draft.url, allow_loopback=allow_loopback)
    subscription = ev.check_subscription(draft.events)
    endpoint_id = keyed.derive("we", 24)

    async def create(uow: UnitOfWork) -> CreatedEndpoint:
        if await uow.webhooks.count_live(platform_id) >= MAX_ENDPOINTS:
            raise errors.TooManyWebhookEndpoints(f"a platform may have {MAX_ENDPOINTS} webhook endpoints")
        secret = rules.new_endpoint_secret()
        endpoint = await uow.webhooks.add_endpoint(platform_id, endpoint_id, url, subscription, secret)
        return CreatedEndpoint(
            id=endpoint.id, url=endpoint.url, events=endpoint.events, secret=secret, status=endpoint.status
        )

    return await keyed.finish(create)


async def list_endpoints(db: Database, platform_id: str) -> list[WebhookEndpoint]:
    return await db.read(lambda uow: uow.webhooks.endpoints(platform_id))


async def get_endpoint(db: Database, platform_id: str, endpoint_id: str) -> WebhookEndpoint:
    return await db.read(lambda uow: uow.webhooks.endpoint(platform_id, endpoint_id))


async def delete_endpoint(db: Database, platform_id: str, endpoint_id: str) -> None:
    """Delete an endpoint: it receives nothing more, and what it still had to receive is cancelled."""

    async def delete(uow: UnitOfWork) -> None:
        await uow.webhooks.endpoint(platform_id, endpoint_id, for_update=True)
        await uow.webhooks.close_endpoint(platform_id, endpoint_id, "deleted", "deleted through the API")

    await db.transaction(delete)


async def list_deliveries(
    db: Database,
    platform_id: str,
    endpoint_id: str,
    *,
    before: int | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Delivery]:
    """The endpoint's delivery log, newest first (``before``: a delivery id, for the next page)."""

    async def read(uow: UnitOfWork) -> list[Delivery]:
        await uow.webhooks.endpoint(platform_id, endpoint_id)
        return await uow.webhooks.deliveries(
            platform_id, endpoint_id=endpoint_id, before=before, status=status, limit=limit
        )

    return await db.read(read)


# -- the relay -------------------------------------------------------------------------------


class RelaySettings(msgspec.Struct, frozen=True, kw_only=True):
    backoff_scale: float = 1.0  # multiplies every retry delay and the 3-day window (tests: small)
    lease_s: float = 60.0  # longer than a send can take (the sender's timeout)
    batch: int = 50
    concurrency: int = 16
    poll_interval_s: float = 1.0  # another process's commits are seen at least this often


class WebhookRelay:
    """Delivers due deliveries, forever (``run``), or one round at a time (``deliver_due``, tests)."""

    def __init__(
        self,
        db: Database,
        sender: WebhookSender,
        settings: RelaySettings | None = None,
        *,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self.db = db
        self.sender = sender
        self.settings = settings or RelaySettings()
        self.faults = faults
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._next_due: float | None = None
        self.sent = 0
        db.on_events_committed(self.wake)

    def wake(self) -> None:
        """Something may be due now (an event committed, a delivery finished)."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                free = self.settings.concurrency - len(self._inflight)
                claimed: list[Claimed] = []
                if free > 0:
                    try:
                        claimed = await self._claim(min(free, self.settings.batch))
                    except errors.StoreUnavailable:
                        log.warning("webhook relay: database unavailable; will try again")
                    except Exception:
                        log.exception("webhook relay: claiming deliveries failed; will try again")
                for item in claimed:
                    task = asyncio.create_task(self._deliver_logged(item), name=f"webhook-{item.delivery_id}")
                    self._inflight.add(task)
                    task.add_done_callback(self._done)
                if claimed and len(claimed) == min(free, self.settings.batch):
                    continue  # there may be more due right now
                await self._sleep()
        finally:
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def deliver_due(self) -> int:
        """Claim and deliver whatever is due now, waiting for every send; returns how many were sent."""
        claimed = await self._claim(self.settings.batch)
        await asyncio.gather(*(self._deliver(item) for item in claimed))
        return len(claimed)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.wake()

    async def _sleep(self) -> None:
        timeout = self.settings.poll_interval_s
        if self._next_due is not None:
            timeout = max(0.0, min(timeout, self._next_due - time.monotonic()))
            self._next_due = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _claim(self, limit: int) -> list[Claimed]:
        """Up to ``limit`` due deliveries: the platforms with deliveries due, longest-waiting first,
        each claimed in a transaction of its own (one platform's rows a transaction)."""
        lease = secrets.token_hex(8)
        lease_s = self.settings.lease_s
        platforms = await self.db.read(lambda uow: uow.webhooks.due_platforms(limit))
        claimed: list[Claimed] = []
        for platform_id in platforms:
            room = limit - len(claimed)
            if room <= 0:
                break

            async def claim(uow: UnitOfWork, platform_id: str = platform_id, room: int = room) -> list[Claimed]:
                return await uow.webhooks.claim(platform_id, room, lease, lease_s)

            claimed += await self.db.transaction(claim)
        return claimed

    async def _deliver_logged(self, item: Claimed) -> None:
        try:
            await self._deliver(item)
        except errors.StoreUnavailable:
            log.warning("webhook relay: could not record delivery %s; its lease will lapse", item.delivery_id)
        except Exception:
            log.exception("webhook relay: delivery %s failed unexpectedly", item.delivery_id)

    async def _deliver(self, item: Claimed) -> None:
        self.faults.hit("webhook:before_send")
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            rules.SIGNATURE_HEADER: rules.signature_header(item.secret, stamp, item.body),
            "Splitledger-Event-Id": item.event_id,
            "Splitledger-Delivery-Id": str(item.delivery_id),
        }
        started = time.monotonic()
        result = await self.sender.post(item.url, item.body, headers)
        elapsed = time.monotonic() - started
        self.sent += 1
        self.faults.hit("webhook:after_send")
        await self.db.transaction(lambda uow: self._record(uow, item, result, elapsed))

    async def _record(self, uow: UnitOfWork, item: Claimed, result: SendResult, elapsed: float) -> None:
        duration_ms = int(elapsed * 1000)
        if rules.is_delivered(result.status):
            await uow.webhooks.record_attempt(
                item,
                response_status=result.status,
                error=None,
                duration_ms=duration_ms,
                outcome="delivered",
                next_attempt_at=None,
            )
            return
        error = result.error or f"HTTP {result.status}"
        now = item.claimed_at + timedelta(seconds=elapsed)
        retry_at = rules.next_attempt_at(
            item.attempt_count + 1, item.created_at, now, random.random(), scale=self.settings.backoff_scale
        )
        kept = await uow.webhooks.record_attempt(
            item,
            response_status=result.status,
            error=error,
            duration_ms=duration_ms,
            outcome="retry" if retry_at is not None else "failed",
            next_attempt_at=retry_at,
        )
        if retry_at is not None:
            due_in = (retry_at - now).total_seconds()
            soonest = time.monotonic() + due_in
            self._next_due = soonest if self._next_due is None else min(self._next_due, soonest)
        elif kept:
            await _disable(uow, item, error)


async def _disable(uow: UnitOfWork, item: Claimed, error: str) -> None:
    """The retry window is over: the endpoint is disabled, and an event says so."""
    reason = f"delivery {item.delivery_id} of {item.event_id} failed for the whole retry window (last: {error})"
    disabled = await uow.webhooks.close_endpoint(item.platform_id, item.endpoint_id, "disabled", reason)
    if disabled is not None:
        log.warning("webhook endpoint disabled", extra={"endpoint_id": item.endpoint_id, "reason": reason})
        uow.events.emit(item.platform_id, ev.endpoint_event(ev.ENDPOINT_DISABLED, disabled.id, disabled))
