"""Capture, set-based, and its group commit: many notifications, one transaction.

Every capture touches the same hot accounts (DOKU clearing, platform commission, DOKU fees). Taking
their row locks once per request caps throughput at a few hundred captures a second; instead,
concurrent captures queue in ``CaptureBatcher`` and one worker drains the queue into a single unit
of work (up to ``max_batch`` captures, set-based through ``capture_batch``), so the hot rows are
locked and updated once per batch. While one batch commits, the next one fills: the batch size adapts
to load with no added latency when idle. Each caller still gets its own result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

from ledger import errors
from ledger import events as ev
from ledger.model import Posted
from ledger.orders import CaptureRequest, CaptureResult, plan_captures
from ledger.store.database import Database, UnitOfWork

log = logging.getLogger("splitledger.capture")

_Item = tuple[str, CaptureRequest, "asyncio.Future[CaptureResult]"]


async def capture_batch(uow: UnitOfWork, platform_id: str, requests: Sequence[CaptureRequest]) -> list[CaptureResult]:
    """Capture many orders in one unit of work; one result per request, in order."""
    orders = await uow.orders.lock_for_capture(platform_id, [r.invoice_number for r in requests])
    plan = plan_captures(requests, orders)
    results: dict[int, CaptureResult] = dict(plan.decided)
    if plan.to_post:
        posted = await uow.ledger.post(platform_id, [draft for _, _, draft in plan.to_post])
        invoices, entry_ids, ats = [], [], []
        for (index, req, _), result in zip(plan.to_post, posted, strict=True):
            if not isinstance(result, Posted):
                # Capture credits only; it can fail only if the ledger itself is broken.
                raise errors.InvalidEntry([(result.code, result.detail)])
            invoices.append(req.invoice_number)
            entry_ids.append(result.entry_id)
            ats.append(req.at)
            results[index] = CaptureResult(
                invoice_number=req.invoice_number,
                outcome="duplicate" if result.replayed else "captured",
                entry_id=result.entry_id,
            )
        captured = await uow.orders.mark_captured(platform_id, invoices, entry_ids, ats)
        uow.events.emit_all(platform_id, [ev.order_event(ev.ORDER_CAPTURED, order) for order in captured])
    return [results[i] for i in range(len(requests))]


async def capture(db: Database, platform_id: str, request: CaptureRequest) -> CaptureResult:
    """Capture one order in its own transaction (the batcher is the high-throughput path)."""

    async def work(uow: UnitOfWork) -> CaptureResult:
        (result,) = await capture_batch(uow, platform_id, [request])
        return result

    return await db.transaction(work)


class CaptureBatcher:
    def __init__(self, db: Database, *, max_batch: int = 500, observe: Callable[[int], None] | None = None) -> None:
        self.db = db
        self.max_batch = max_batch
        self.observe = observe  # told each committed batch's size (metrics)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.captures = 0

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="capture-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():
            _, _, future = self._queue.get_nowait()
            if not future.done():
                future.cancel()

    def depth(self) -> int:
        """Captures waiting for the next batch."""
        return self._queue.qsize()

    async def capture(self, platform_id: str, request: CaptureRequest) -> CaptureResult:
        if self._worker is None:
            await self.start()
        future: asyncio.Future[CaptureResult] = asyncio.get_running_loop().create_future()
        await self._queue.put((platform_id, request, future))
        return await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for _, _, future in batch:
                    if not future.done():
                        future.cancel()
                raise
            except errors.StoreUnavailable as exc:
                # The database is gone: every caller hears so at once (and answers 503).
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            except Exception:
                log.exception("capture batch failed; retrying its captures one by one")
                for item in batch:
                    try:
                        await self._commit([item])
                    except Exception as exc:
                        if not item[2].done():
                            item[2].set_exception(exc)

    async def _commit(self, batch: list[_Item]) -> None:
        by_platform: dict[str, list[int]] = defaultdict(list)
        for index, (platform_id, _, _) in enumerate(batch):
            by_platform[platform_id].append(index)

        async def work(uow: UnitOfWork) -> dict[int, CaptureResult]:
            results: dict[int, CaptureResult] = {}
            for platform_id in sorted(by_platform):  # a global lock order across platforms
                indexes = by_platform[platform_id]
                outcome = await capture_batch(uow, platform_id, [batch[i][1] for i in indexes])
                results.update(zip(indexes, outcome, strict=True))
            return results

        results = await self.db.transaction(work)
        self.batches += 1
        self.captures += len(batch)
        if self.observe is not None:
            self.observe(len(batch))
        for index, (_, _, future) in enumerate(batch):
            if not future.done():
                future.set_result(results[index])
