"""The one owner of every transaction: ``Database`` opens it, ``UnitOfWork`` hands out the tables.

Rules:
* A use case never touches a connection. It asks ``Database.transaction(work)`` to run
  ``work(uow)`` in one transaction and reaches each table through ``uow`` (``uow.orders``,
  ``uow.ledger``, ``uow.keys`` …); every table's SQL lives in its own module of this package.
* The whole unit of work is run again on a deadlock or serialization failure (with jitter), and
  committed or rolled back as a whole: nothing is half-written.
* Events a use case emits (``uow.events.emit``) are written as the unit of work's last statement,
  so they commit with the change or not at all (the outbox: ``ledger.store.events``); after a
  commit that wrote events, the listeners (the webhook relay) are told at once.
* ``Database.group(works)`` is the group commit of independent units of work (refunds, payouts):
  each runs in its own savepoint of one transaction with its own ``UnitOfWork`` (its events
  flushed inside its savepoint), so a member that fails is rolled back alone and its exception is
  its outcome; the rest commit together, once. Lost connections, deadlocks and serialization
  failures fail or retry the whole group, never one member of it.
* Driver errors are translated at this seam (``ledger.store.driver``): an unreachable database is
  ``StoreUnavailable`` within ``acquire_timeout_s``; the service recovers by itself once the
  database is back, because the pool opens fresh connections.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from typing import Literal, TypeVar

import asyncpg
import msgspec

import ledger.store.driver as driver
from ledger import errors
from ledger.store.chain import ChainTable
from ledger.store.encryption import Keyring
from ledger.store.events import EventsTable
from ledger.store.exceptions import ExceptionsTable
from ledger.store.gateways import GatewaysTable
from ledger.store.idempotency import IdempotencyKeys
from ledger.store.inbox import InboxTable
from ledger.store.journal import BoundLedger, ConcurrentDuplicate, LedgerStore
from ledger.store.orders import OrdersTable
from ledger.store.payouts import PayoutsTable
from ledger.store.platforms import PlatformsTable
from ledger.store.refunds import RefundsTable
from ledger.store.reports import ReportsTable
from ledger.store.sellers import SellersTable
from ledger.store.settlements import SettlementsTable
from ledger.store.webhooks import WebhooksTable

T = TypeVar("T")
R = TypeVar("R")
MAX_ATTEMPTS = 6
TRANSIENT: tuple[type[BaseException], ...] = (*driver.RETRYABLE, ConcurrentDuplicate)
Isolation = Literal["read_committed", "repeatable_read", "serializable"]


class UnitOfWork:
    """The tables of one transaction (or of one connection, for reads)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        ledger: LedgerStore,
        keyring: Keyring | None = None,
        *,
        distributed: bool = False,
    ) -> None:
        self.conn = conn
        self._ledger = ledger
        self._keyring = keyring
        self._distributed = distributed  # on a Citus cluster: many rows are written as VALUES lists

    @cached_property
    def ledger(self) -> BoundLedger:
        return BoundLedger(self._ledger, self.conn)

    @cached_property
    def chain(self) -> ChainTable:
        return ChainTable(self.conn, distributed=self._distributed)

    @cached_property
    def orders(self) -> OrdersTable:
        return OrdersTable(self.conn)

    @cached_property
    def refunds(self) -> RefundsTable:
        return RefundsTable(self.conn)

    @cached_property
    def payouts(self) -> PayoutsTable:
        return PayoutsTable(self.conn)

    @cached_property
    def sellers(self) -> SellersTable:
        return SellersTable(self.conn)

    @cached_property
    def exceptions(self) -> ExceptionsTable:
        return ExceptionsTable(self.conn, distributed=self._distributed)

    @cached_property
    def inbox(self) -> InboxTable:
        return InboxTable(self.conn, distributed=self._distributed)

    @cached_property
    def keys(self) -> IdempotencyKeys:
        return IdempotencyKeys(self.conn)

    @cached_property
    def gateways(self) -> GatewaysTable:
        return GatewaysTable(self.conn, self._keyring)

    @cached_property
    def platforms(self) -> PlatformsTable:
        return PlatformsTable(self.conn)

    @cached_property
    def settlements(self) -> SettlementsTable:
        return SettlementsTable(self.conn, distributed=self._distributed)

    @cached_property
    def reports(self) -> ReportsTable:
        return ReportsTable(self.conn)

    @cached_property
    def events(self) -> EventsTable:
        return EventsTable(self.conn, distributed=self._distributed)

    @cached_property
    def webhooks(self) -> WebhooksTable:
        return WebhooksTable(self.conn)

    async def flush_events(self) -> int:
        """Write the events emitted in this unit of work (``Database.transaction`` does, last)."""
        outbox: EventsTable | None = self.__dict__.get("events")
        return await outbox.flush() if outbox is not None else 0

    def has_pending_events(self) -> bool:
        outbox: EventsTable | None = self.__dict__.get("events")
        return outbox is not None and outbox.pending > 0


class _Acquired:
    """One pooled connection for the length of an ``async with``; driver errors raised inside are
    translated on the way out. (A plain class, not ``@asynccontextmanager``, and ``asyncio.timeout``
    rather than asyncpg's own acquire timeout, which starts a task: every request passes here.)"""

    __slots__ = ("conn", "pool", "timeout_s")

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self.pool = pool
        self.timeout_s = timeout_s

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            async with asyncio.timeout(self.timeout_s):
                self.conn = await self.pool.acquire()
        except driver.UNAVAILABLE as exc:
            raise driver.unavailable(exc) from exc
        return self.conn

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            await self.pool.release(self.conn)
        except driver.UNAVAILABLE as released:
            if exc is None:
                raise driver.unavailable(released) from released
        if exc is None:
            return
        if isinstance(exc, driver.UNAVAILABLE):
            raise driver.unavailable(exc) from exc
        if isinstance(exc, asyncpg.exceptions.IntegrityConstraintViolationError):
            raise driver.translate_integrity_error(exc) from exc


class Database:
    """The pool, and the only way to run SQL on it; ``keyring`` seals and opens DOKU secrets."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout_s: float = 2.0, keyring: Keyring | None = None) -> None:
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s
        self.keyring = keyring
        self.ledger = LedgerStore(pool, database=self)
        self._event_listeners: list[Callable[[], None]] = []
        self._distributed: bool | None = None  # a Citus cluster? (asked at the first unit of work)

    async def _uow(self, conn: asyncpg.Connection) -> UnitOfWork:
        if self._distributed is None:
            self._distributed = self.ledger.distributed = await driver.is_distributed(conn)
        return UnitOfWork(conn, self.ledger, self.keyring, distributed=self._distributed)

    def on_events_committed(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (no I/O, no await) after every commit that wrote events."""
        self._event_listeners.append(listener)

    def notify_events_committed(self) -> None:
        for listener in self._event_listeners:
            listener()

    def _acquire(self) -> _Acquired:
        return _Acquired(self.pool, self.acquire_timeout_s)

    async def transaction(
        self,
        work: Callable[[UnitOfWork], Awaitable[T]],
        *,
        isolation: Isolation | None = None,
        readonly: bool = False,
    ) -> T:
        """Run ``await work(uow)`` in one transaction, again on transient conflicts."""

        async def once() -> tuple[T, int]:
            async with self._acquire() as conn, conn.transaction(isolation=isolation, readonly=readonly):
                uow = await self._uow(conn)
                result = await work(uow)
                return result, await uow.flush_events()

        return await self._retrying(once)

    async def _retrying(self, once: Callable[[], Awaitable[tuple[R, int]]]) -> R:
        """Run ``once`` (one whole transaction, returning its result and the events it wrote) again
        on transient conflicts, with jitter; after a commit that wrote events, tell the listeners."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                result, written = await once()
            except TRANSIENT:
                if attempt == MAX_ATTEMPTS:
                    raise errors.StoreUnavailable("gave up after repeated transaction conflicts") from None
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            if written:
                self.notify_events_committed()
            return result
        raise AssertionError("unreachable")

    async def group(
        self,
        works: Sequence[Callable[[UnitOfWork], Awaitable[T]]],
        *,
        fatal: tuple[type[BaseException], ...] = (),
    ) -> list[T | Exception]:
        """Run every work in its own savepoint of ONE transaction and commit once.

        Each work's result, or the exception it raised (its savepoint rolled back, its events
        dropped), in the works' order. An exception in ``fatal``, a lost connection or a transient
        conflict ends the whole group: nothing of it commits (the transient ones are retried whole).
        """
        ends_group: tuple[type[BaseException], ...] = (
            *TRANSIENT,
            *driver.UNAVAILABLE,
            errors.StoreUnavailable,
            *fatal,
        )

        async def once() -> tuple[list[T | Exception], int]:
            outcomes: list[T | Exception] = []
            written = 0
            async with self._acquire() as conn, conn.transaction():
                for work in works:
                    uow = await self._uow(conn)
                    try:
                        async with conn.transaction():  # a savepoint
                            result = await work(uow)
                            written += await uow.flush_events()
                    except ends_group:
                        raise
                    except asyncpg.exceptions.IntegrityConstraintViolationError as exc:
                        outcomes.append(driver.translate_integrity_error(exc))
                    except Exception as exc:
                        outcomes.append(exc)
                    else:
                        outcomes.append(result)
            return outcomes, written

        return await self._retrying(once)

    async def read(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """Run ``await work(uow)`` on one connection without an explicit transaction (reads)."""
        async with self._acquire() as conn:
            uow = await self._uow(conn)
            result = await work(uow)
        if uow.has_pending_events():
            raise AssertionError("events are written by Database.transaction, never by a read")
        return result

    async def ping(self) -> float:
        """Round trip to the database in seconds; ``StoreUnavailable`` when it cannot be reached."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self._acquire() as conn:
            await conn.fetchval("SELECT 1")
        return loop.time() - started


async def create_pool(
    url: str, *, min_size: int = 2, max_size: int = 10, connect_timeout_s: float = 2.0
) -> asyncpg.Pool:
    """The service's pool: UTC sessions, jsonb as Python objects through msgspec (one codec, no hand decoding)."""
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            command_timeout=60,
            timeout=connect_timeout_s,
            init=init_connection,
            reset=keep_session,
            connection_class=driver.Connection,
        )
    except driver.UNAVAILABLE as exc:
        raise driver.unavailable(exc) from exc
    assert pool is not None
    return pool


def _encode_json(value: object) -> str:
    return msgspec.json.encode(value).decode()


async def keep_session(conn: asyncpg.Connection) -> None:
    """Released connections keep their session: asyncpg rolls back a transaction left open (and
    drops listeners) before calling this, which is all the service needs, since it never leaves
    session state behind (no session SET, LISTEN, cursor or session advisory lock). The default
    reset (``RESET ALL`` and friends) costs a round trip per request and would undo the session's
    UTC time zone set by ``init_connection``."""


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(
            type_name, encoder=_encode_json, decoder=msgspec.json.decode, schema="pg_catalog", format="text"
        )
