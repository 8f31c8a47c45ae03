"""DOKU's word about payments, group-committed: many notifications, one transaction.

Every capture touches the same hot accounts (DOKU clearing, platform commission, DOKU fees).
Taking their row locks once per request caps throughput at a few hundred captures a second; instead,
concurrent notifications (and status-check answers) queue in ``CaptureBatcher`` and are applied in
one unit of work per batch (``apply_words``, set-based), so the hot rows are locked and updated once
per batch. While one batch commits the next one fills: batches grow with load and add no latency
when idle.

Rules:
* A notification is one batch member, whole: its inbox row, its capture entry, its order's update
  and the reconciliation exception of a mismatch or an unknown invoice are written in the unit of
  work of its batch; its caller hears the outcome only after that commit. Duplicates, mismatches,
  FAILED/EXPIRED and refused deliveries (forged, malformed, stale) ride the same batches.
* A word that contradicts its order (docs/order-states.md: SUCCESS after FAILED or EXPIRED, FAILED
  / EXPIRED / TIMEOUT after SUCCESS) is a ``conflict`` and moves no money: in the same unit of work
  it becomes the order's ``status_conflict`` exception with the evidence (opened through
  ``open_exceptions``, or added to the one already open), and its inbox row says ``conflict``. The
  notification adapter then asks DOKU for the status; an operator resolves it.
* Lock order, the same for every writer (no deadlocks between batches of this worker, of other
  workers, or with refunds and settlement): platforms in id order; per platform, every order the
  batch names (invoice order), then the balance rows (account order, ``lock_accounts``).
* Up to ``in_flight`` batches run at once, each on its own connection: one batch waiting on a lock or
  on its commit's WAL flush does not hold up the batches after it.
* A batch is one platform's: members queue per platform, and each batch takes the members of the
  platform waiting longest (then that platform goes to the back of the line). A transaction thus
  never touches two platforms' rows, which on a cluster distributed by platform (docs/scale-out.md)
  keeps every batch on one shard group of one node, committed without a two-phase commit.
* With the database gone every member hears ``database_unavailable`` (answered 503, so DOKU
  delivers again); a batch failing for any other reason is retried member by member, so one bad
  member cannot sink the others. Every caller's future is settled, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from ledger import errors
from ledger import events as ev
from ledger.model import Posted
from ledger.orders import (
    STATUS_CONFLICT,
    Capturable,
    CaptureRequest,
    CaptureResult,
    OrderStatus,
    PaymentAction,
    conflict_evidence,
    in_arrival_rounds,
    is_contradiction,
    payment_action,
    plan_captures,
)
from ledger.service.events import open_exceptions
from ledger.service.faults import NO_FAULTS, Faults, InjectedCrash
from ledger.store.database import Database, UnitOfWork
from ledger.store.exceptions import NewException
from ledger.store.inbox import Delivery

log = logging.getLogger("splitledger.capture")

CLOSED_STATUS: dict[str, OrderStatus] = {"fail": "failed", "expire": "expired"}


class PaymentWord(msgspec.Struct, frozen=True, kw_only=True):
    """DOKU's word about one payment: a verified notification or a status check's answer."""

    invoice_number: str
    amount: int
    status: str  # DOKU's transaction status
    at: datetime | None = None
    source: str = "notification"


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one batch member: ``captured``, ``duplicate``, ``amount_mismatch``,
    ``unknown_invoice``, ``closed``, ``conflict``, ``ignored``, or a refused delivery's own outcome."""

    outcome: str
    capture: CaptureResult | None = None


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """One batch member: DOKU's word to apply (none for a refused delivery), and the delivery to keep
    in the inbox with the outcome (none for a status check)."""

    word: PaymentWord | None = None
    delivery: Delivery | None = None


async def capture_batch(
    uow: UnitOfWork, platform_id: str, requests: Sequence[CaptureRequest], *, reopen: bool = False
) -> list[CaptureResult]:
    """Capture many orders in one unit of work; one result per request, in order (``reopen``: see
    ``plan_captures``)."""
    orders = await uow.orders.lock_for_capture(platform_id, [r.invoice_number for r in requests])
    return await _capture_locked(uow, platform_id, requests, orders, reopen=reopen)


async def _capture_locked(
    uow: UnitOfWork,
    platform_id: str,
    requests: Sequence[CaptureRequest],
    orders: dict[str, Capturable],
    *,
    reopen: bool = False,
) -> list[CaptureResult]:
    """Capture orders already locked by this unit of work; ``orders`` learns which were captured."""
    plan = plan_captures(requests, orders, reopen=reopen)
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
            orders[req.invoice_number] = msgspec.structs.replace(
                orders[req.invoice_number], status="captured", capture_entry_id=result.entry_id
            )
        captured = await uow.orders.mark_captured(platform_id, invoices, entry_ids, ats)
        uow.events.emit_all(platform_id, [ev.order_event(ev.ORDER_CAPTURED, order) for order in captured])
    return [results[i] for i in range(len(requests))]


async def apply_words(uow: UnitOfWork, platform_id: str, members: Sequence[Member]) -> list[Applied]:
    """Apply one platform's batch members in one unit of work; one result per member, in order."""
    actions: list[PaymentAction] = [payment_action(m.word.status) if m.word is not None else "ignore" for m in members]
    named = [m.word.invoice_number for m, a in zip(members, actions, strict=True) if m.word and a != "ignore"]
    orders = await uow.orders.lock_for_capture(platform_id, named) if named else {}
    results: list[Applied | None] = [None] * len(members)
    conflicts: dict[int, tuple[str, int, dict[str, Any]]] = {}  # member -> (invoice, order amount, evidence)
    keys = [(m.word.invoice_number if m.word else "", a) for m, a in zip(members, actions, strict=True)]
    for round_ in in_arrival_rounds(keys):
        captures = [i for i in round_ if actions[i] == "capture"]
        if captures:
            requests = [_request(members[i].word) for i in captures]
            for i, result in zip(captures, await _capture_locked(uow, platform_id, requests, orders), strict=True):
                results[i] = Applied(outcome=result.outcome, capture=result)
                if result.outcome == "conflict":  # a SUCCESS for an order that failed or expired
                    conflicts[i] = _conflict(members[i].word, orders.get(result.invoice_number))
        for i in round_:
            word, delivery, action = members[i].word, members[i].delivery, actions[i]
            if word is not None and action in CLOSED_STATUS:
                outcome = await _close(uow, platform_id, word, action, orders)
                if outcome == "conflict":  # a FAILED / EXPIRED / TIMEOUT for a captured order
                    conflicts[i] = _conflict(word, orders[word.invoice_number])
                results[i] = Applied(outcome=outcome)
            elif word is None and delivery is not None:
                results[i] = Applied(outcome=delivery.outcome)  # refused before it was applied
            elif results[i] is None:
                results[i] = Applied(outcome="ignored")
    applied = [r for r in results if r is not None]
    contradicting = [conflicts[i] for i in sorted(conflicts)]  # in arrival order
    found = _exceptions(members, applied) + await _conflicts_to_open(uow, platform_id, contradicting)
    await open_exceptions(uow, platform_id, found)
    await uow.inbox.keep_many(
        platform_id,
        [
            msgspec.structs.replace(m.delivery, outcome=a.outcome) if m.word is not None else m.delivery
            for m, a in zip(members, applied, strict=True)
            if m.delivery is not None
        ],
    )
    return applied


def _request(word: PaymentWord | None) -> CaptureRequest:
    assert word is not None
    return CaptureRequest(invoice_number=word.invoice_number, amount=word.amount, at=word.at, source=word.source)


async def _close(
    uow: UnitOfWork, platform_id: str, word: PaymentWord, action: str, orders: dict[str, Capturable]
) -> str:
    """FAILED / EXPIRED / TIMEOUT: an open order closes; a captured one is a ``conflict`` (the capture
    stands); any other stays as it is (e.g. EXPIRED after FAILED: no money either way)."""
    closed = await uow.orders.set_status(
        platform_id, word.invoice_number, CLOSED_STATUS[action], closed_reason=f"doku_{word.status.lower()}"
    )
    uow.events.emit_all(platform_id, ev.closed_order_event(closed))
    if closed is None:
        order = orders.get(word.invoice_number)
        return "conflict" if order is not None and is_contradiction(order.status, word.status) else "ignored"
    orders[word.invoice_number] = msgspec.structs.replace(
        orders[word.invoice_number], status=closed.status, closed_reason=closed.closed_reason
    )
    return "closed"


def _conflict(word: PaymentWord | None, order: Capturable | None) -> tuple[str, int, dict[str, Any]]:
    """A contradicting word, as evidence: what DOKU said, and what the order was when it came."""
    assert word is not None and order is not None  # a conflict is about a word for an order we know
    evidence = conflict_evidence(
        order.status,
        order.closed_reason,
        doku_status=word.status,
        amount=word.amount,
        date=word.at.isoformat() if word.at is not None else None,
        source=word.source,
    )
    return word.invoice_number, order.amount, evidence


async def _conflicts_to_open(
    uow: UnitOfWork, platform_id: str, conflicts: Sequence[tuple[str, int, dict[str, Any]]]
) -> list[NewException]:
    """Keep the batch's contradicting words as evidence: added to the order's open ``status_conflict``
    when there is one, else the order's new one (one per order, however many words the batch
    brought); returns the exceptions to open. Money stays as it is until an operator resolves it."""
    received = datetime.now(UTC).isoformat()
    by_invoice: dict[str, tuple[int, list[dict[str, Any]]]] = {}
    for invoice, amount, evidence in conflicts:
        by_invoice.setdefault(invoice, (amount, []))[1].append({**evidence, "received_at": received})
    found: list[NewException] = []
    for invoice, (amount, evidences) in by_invoice.items():
        open_ = await uow.exceptions.open_of(platform_id, invoice, STATUS_CONFLICT)
        if open_:
            for evidence in evidences:
                await uow.exceptions.add_evidence(platform_id, [e.exception_id for e in open_], "evidence", evidence)
            continue
        first = evidences[0]
        said, was = first["doku_status"], first["order_status"]
        message = f"DOKU says {said} for an order that is {was}: money stays as it is until an operator resolves this"
        found.append(
            NewException(
                kind=STATUS_CONFLICT,
                source=str(first["source"]),
                invoice_number=invoice,
                expected=amount,
                actual=int(first["amount"]),
                detail={"message": message, "order_status": was, "evidence": evidences, "status_checks": []},
            )
        )
    return found


def _exceptions(members: Sequence[Member], applied: Sequence[Applied]) -> list[NewException]:
    """A capture that does not match its order is never posted: it becomes a reconciliation exception."""
    return [
        NewException(
            kind=a.capture.outcome,
            source=m.word.source,
            invoice_number=m.word.invoice_number,
            expected=a.capture.expected,
            actual=m.word.amount,
        )
        for m, a in zip(members, applied, strict=True)
        if m.word is not None and a.capture is not None and a.capture.outcome in ("amount_mismatch", "unknown_invoice")
    ]


async def capture(db: Database, platform_id: str, request: CaptureRequest) -> CaptureResult:
    """Capture one order in its own transaction (the batcher is the high-throughput path)."""

    async def work(uow: UnitOfWork) -> CaptureResult:
        (result,) = await capture_batch(uow, platform_id, [request])
        return result

    return await db.transaction(work)


_Item = tuple[str, Member, "asyncio.Future[Applied]"]


class CaptureBatcher:
    """The group commit of DOKU's words: ``apply`` queues a member and returns its outcome once the
    batch that carried it has committed."""

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 500,
        in_flight: int = 2,
        faults: Faults = NO_FAULTS,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.faults = faults
        self.observe = observe  # told each committed batch's size (metrics)
        self.max_batch = max_batch
        self.in_flight = max(1, in_flight)
        # Members waiting, per platform; the dict's order is the order platforms get their batches.
        self._waiting: dict[str, list[_Item]] = {}
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.captures = 0  # members committed

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="capture-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for task in list(self._batches):
            task.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)
        waiting, self._waiting = self._waiting, {}
        for items in waiting.values():
            _cancel(items)

    def depth(self) -> int:
        """Members waiting for a batch."""
        return sum(len(items) for items in self._waiting.values())

    async def apply(self, platform_id: str, word: PaymentWord | None, delivery: Delivery | None = None) -> Applied:
        if self._worker is None:
            await self.start()
        future: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(platform_id, []).append((platform_id, Member(word=word, delivery=delivery), future))
        self._arrived.set()
        return await future

    async def capture(self, platform_id: str, request: CaptureRequest) -> CaptureResult:
        """Capture one order through the batcher (a SUCCESS without an inbox row)."""
        word = PaymentWord(
            invoice_number=request.invoice_number,
            amount=request.amount,
            status="SUCCESS",
            at=request.at,
            source=request.source,
        )
        applied = await self.apply(platform_id, word)
        assert applied.capture is not None
        return applied.capture

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.in_flight)
        while True:
            await slots.acquire()  # a free connection first: meanwhile the queue fills the next batch
            try:
                while not self._waiting:
                    self._arrived.clear()
                    await self._arrived.wait()
            except BaseException:
                slots.release()
                raise
            batch = self._next_batch()
            task = asyncio.create_task(self._settle(batch), name="capture-batch")
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
            task.add_done_callback(lambda _: slots.release())

    def _next_batch(self) -> list[_Item]:
        """Up to ``max_batch`` members of the platform waiting longest; the rest of its members wait
        behind every other platform's."""
        platform_id = next(iter(self._waiting))
        items = self._waiting.pop(platform_id)
        batch, rest = items[: self.max_batch], items[self.max_batch :]
        if rest:
            self._waiting[platform_id] = rest
        return batch

    async def _settle(self, batch: list[_Item]) -> None:
        try:
            await self._commit(batch)
        except (errors.StoreUnavailable, InjectedCrash) as exc:
            # The database is gone (or, in a test, the process 'died'): every caller hears so at
            # once (and answers 503); nothing is retried here, DOKU delivers again.
            _fail(batch, exc)
        except asyncio.CancelledError:
            _cancel(batch)
            raise
        except Exception:
            log.exception("capture batch failed; retrying its members one by one")
            for item in batch:
                try:
                    await self._commit([item])
                except asyncio.CancelledError:
                    _cancel(batch)
                    raise
                except Exception as exc:
                    _fail([item], exc)
        finally:
            _cancel(batch)  # never leave a caller waiting

    async def _commit(self, batch: list[_Item]) -> None:
        by_platform: dict[str, list[int]] = defaultdict(list)
        for index, (platform_id, _, _) in enumerate(batch):
            by_platform[platform_id].append(index)

        async def work(uow: UnitOfWork) -> dict[int, Applied]:
            results: dict[int, Applied] = {}
            for platform_id in sorted(by_platform):  # a global lock order across platforms
                indexes = by_platform[platform_id]
                outcome = await apply_words(uow, platform_id, [batch[i][1] for i in indexes])
                results.update(zip(indexes, outcome, strict=True))
            self.faults.hit("capture_batch:before_commit")
            return results

        results = await self.db.transaction(work)
        self.faults.hit("capture_batch:after_commit")
        self.batches += 1
        self.captures += len(batch)
        if self.observe is not None:
            self.observe(len(batch))
        for index, (_, _, future) in enumerate(batch):
            if not future.done():
                future.set_result(results[index])


def _fail(batch: Sequence[_Item], exc: BaseException) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(exc)


def _cancel(batch: Sequence[_Item]) -> None:
    for _, _, future in batch:
        if not future.done():
            future.cancel()
