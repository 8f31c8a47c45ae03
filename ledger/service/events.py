"""The event feed a platform pages through, manual redelivery, and the events of reconciliation
exceptions (opened wherever an exception is found, resolved by an operator).

Rules:
* The feed is per platform and read by position; before it reads, committed events get their
  positions (``uow.events.sequence``, in a transaction of its own), so paging from any cursor
  returns every event exactly once, in the order the changes committed (docs/events.md says why).
* Every reconciliation exception is opened through ``open_exceptions`` so that none is opened
  without its ``reconciliation.exception_opened`` event (tests/unit/test_events_emitted.py checks
  that no use case calls ``uow.exceptions.add`` directly).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ledger import errors
from ledger import events as ev
from ledger.store.database import Database, UnitOfWork
from ledger.store.events import StoredEvent
from ledger.store.exceptions import NewException, ReconciliationException
from ledger.webhooks import Delivery


class FeedPage(msgspec.Struct, frozen=True, kw_only=True):
    events: list[StoredEvent]
    has_more: bool
    next_cursor: str


async def open_exceptions(
    uow: UnitOfWork, platform_id: str, found: Sequence[NewException]
) -> list[ReconciliationException]:
    """Open reconciliation exceptions, each with its ``reconciliation.exception_opened`` event."""
    opened = await uow.exceptions.add(platform_id, found)
    uow.events.emit_all(platform_id, [ev.exception_event(ev.EXCEPTION_OPENED, e.exception_id, e) for e in opened])
    return opened


def exception_resolved(uow: UnitOfWork, platform_id: str, resolved: ReconciliationException) -> None:
    uow.events.emit(platform_id, ev.exception_event(ev.EXCEPTION_RESOLVED, resolved.exception_id, resolved))


async def list_events(
    db: Database, platform_id: str, *, after: str | None = None, limit: int = 100, type_: str | None = None
) -> FeedPage:
    """One page of the platform's feed after ``after`` (a cursor, or an event id; none: the start)."""
    wanted = ev.check_type(type_) if type_ is not None else None
    await sequence_feed(db, platform_id)

    async def read(uow: UnitOfWork) -> FeedPage:
        position = await _position(uow, platform_id, after)
        found = await uow.events.page(platform_id, after=position, limit=limit + 1, type_=wanted)
        page = found[:limit]
        last = page[-1].position if page else position
        assert last is not None  # the page holds sequenced events only
        return FeedPage(events=page, has_more=len(found) > limit, next_cursor=ev.encode_cursor(last))

    return await db.read(read)


async def sequence_feed(db: Database, platform_id: str, batch: int = 2000) -> int:
    """Give the platform's committed events their feed positions (nothing to do: no write at all)."""
    numbered = 0
    while await db.read(lambda uow: uow.events.has_unsequenced(platform_id)):
        done = await db.transaction(lambda uow: uow.events.sequence(platform_id, batch))
        numbered += done
        if done < batch:
            break
    return numbered


async def _position(uow: UnitOfWork, platform_id: str, after: str | None) -> int:
    if not after:
        return 0
    if after.startswith("evt_"):
        found = await uow.events.get(platform_id, after)
        if found is None or found.position is None:
            raise errors.EventNotFound(f"no event {after!r}", event_id=after)
        return found.position
    try:
        return ev.decode_cursor(after)
    except ValueError as exc:
        raise errors.InvalidCursor("bad cursor: pass the next_cursor of a page, or an event id") from exc


async def get_event(db: Database, platform_id: str, event_id: str) -> StoredEvent:
    async def read(uow: UnitOfWork) -> StoredEvent:
        found = await uow.events.get(platform_id, event_id)
        if found is None:
            raise errors.EventNotFound(f"no event {event_id!r}", event_id=event_id)
        return found

    return await db.read(read)


async def redeliver(db: Database, platform_id: str, event_id: str, endpoint_id: str | None = None) -> list[Delivery]:
    """Send an event again to every enabled endpoint subscribed to its type (or to ``endpoint_id``)."""

    async def work(uow: UnitOfWork) -> list[Delivery]:
        found = await uow.events.get(platform_id, event_id)
        if found is None:
            raise errors.EventNotFound(f"no event {event_id!r}", event_id=event_id)
        if endpoint_id is not None:
            endpoint = await uow.webhooks.endpoint(platform_id, endpoint_id)
            if endpoint.status != "enabled":
                raise errors.WebhookEndpointNotFound(
                    f"webhook endpoint {endpoint_id!r} is {endpoint.status}", endpoint_id=endpoint_id
                )
        ids = await uow.webhooks.redeliver(platform_id, found.event_id, found.seq, found.type, found.chain, endpoint_id)
        return await uow.webhooks.deliveries(platform_id, delivery_ids=ids, limit=max(len(ids), 1)) if ids else []

    deliveries = await db.transaction(work)
    if deliveries:
        db.notify_events_committed()
    return deliveries
