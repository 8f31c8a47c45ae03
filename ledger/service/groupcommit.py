"""The group commit of refunds and payouts: their money-moving unit of work, queued, and committed
with the others waiting beside it in one transaction per platform.

Rules:
* ``run(platform_id, work)`` returns what ``work(uow)`` returned, or raises what it raised, once the
  transaction that carried it has committed (or, for a raised error, been decided). Each member has
  its own savepoint (``Database.group``): one refused refund never undoes its neighbours, and its
  events never commit.
* A group never spans platforms (on Citus each platform's rows live on its own shards, so a group is
  always a single-shard transaction); the platforms of one batch commit side by side on their own
  connections.
* A lone request waits for nobody: the worker takes whatever is queued when a slot is free, so the
  batch grows only while the database is busy. ``in_flight`` groups at most are open at once.
* A lost database, or a process crash (``InjectedCrash`` in tests), fails every member of its group:
  nothing of it committed, and each request's Idempotency-Key resumes on retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ledger.service.faults import InjectedCrash
from ledger.store.database import Database, UnitOfWork

T = TypeVar("T")
Work = Callable[[UnitOfWork], Awaitable[Any]]
_Item = tuple[str, Work, "asyncio.Future[Any]"]


class GroupCommitter:
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 200,
        in_flight: int = 2,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.max_batch = max(1, max_batch)
        self.in_flight = max(1, in_flight)
        self.observe = observe  # told each committed group's size (metrics)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._groups: set[asyncio.Task[None]] = set()
        self.groups = 0  # transactions committed
        self.members = 0  # units of work they carried

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for task in list(self._groups):
            task.cancel()
        await asyncio.gather(*self._groups, return_exceptions=True)
        while not self._queue.empty():
            _, _, future = self._queue.get_nowait()
            if not future.done():
                future.cancel()

    async def run(self, platform_id: str, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        if self._worker is None:
            await self.start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((platform_id, work, future))
        return await future

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.in_flight)
        while True:
            await slots.acquire()
            try:
                batch = [await self._queue.get()]
            except BaseException:
                slots.release()
                raise
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            task = asyncio.create_task(self._settle(batch), name="group-commit-batch")
            self._groups.add(task)
            task.add_done_callback(self._groups.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _settle(self, batch: list[_Item]) -> None:
        by_platform: dict[str, list[_Item]] = defaultdict(list)
        for item in batch:
            by_platform[item[0]].append(item)
        try:
            await asyncio.gather(*(self._commit(items) for items in by_platform.values()))
        finally:
            for _, _, future in batch:  # never leave a caller waiting
                if not future.done():
                    future.cancel()

    async def _commit(self, items: Sequence[_Item]) -> None:
        try:
            outcomes = await self.db.group([work for _, work, _ in items], fatal=(InjectedCrash,))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is gone, or the process 'died': nothing committed
            for _, _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        self.groups += 1
        self.members += len(items)
        if self.observe is not None:
            self.observe(len(items))
        for (_, _, future), outcome in zip(items, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
