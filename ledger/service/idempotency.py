"""Exactly-once requests: an ``Idempotency-Key``'s progress is committed with each phase's effect.

The "atomic phases and recovery points" design for Postgres idempotency keys:
* A request is a sequence of phases. Each phase is one transaction that locks the key's row
  (creating it on first use), checks it, does its work and records the phase as done, all
  together; the last phase (``finish``) stores the answer in the same transaction as its effect.
* Work around a foreign call (DOKU) sits between two phases. A retry after a crash anywhere
  skips the phases already committed and resumes after them; the foreign call is made again
  with the same Request-Id (stored before the call, or derived from platform and key), which
  DOKU treats as the same request.
* Ids of what a request creates are derived from ``(platform, key)`` (``derive``), so a retry
  finds the refund or payout the first attempt made instead of minting a new one.
* Same key, other request: ``IdempotencyConflict``. Same key while another execution holds its
  lease between phases: ``IdempotencyInProgress``; a lease lapses (``lease_s``) when its process
  died, and the next request with the key takes over. A finished key replays its answer
  (``Replayed``), byte for byte.

Without a key the same code runs each phase as a plain transaction. A phase or finish marked
``grouped`` (refunds and payouts: they lock the platform's hot accounts) goes through the group
commit (``ledger.service.groupcommit``) when the ``Keyed`` has one: its own savepoint in a
transaction shared with its neighbours, the key's progress in that savepoint with its effect.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from ledger import errors
from ledger.service.faults import NO_FAULTS, Faults
from ledger.service.groupcommit import GroupCommitter
from ledger.store.database import Database, UnitOfWork
from ledger.store.idempotency import KeyState

T = TypeVar("T")


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP answer as stored with its key: status and the exact body bytes."""

    status: int
    body: bytes


class Replayed(Exception):
    """The key's request finished before: here is its answer."""

    def __init__(self, answer: Answer) -> None:
        super().__init__("replayed")
        self.answer = answer


class Keyed:
    """One execution of one request, under its Idempotency-Key (or none)."""

    def __init__(
        self,
        db: Database,
        platform_id: str,
        key: str | None,
        fingerprint: bytes,
        encode: Callable[[object], Answer],
        *,
        lease_s: float = 60.0,
        faults: Faults = NO_FAULTS,
        group: GroupCommitter | None = None,
    ) -> None:
        self.db = db
        self.group = group
        self.platform_id = platform_id
        self.key = key
        self.fingerprint = fingerprint
        self.encode = encode
        self.lease_s = lease_s
        self.faults = faults
        self.owner = secrets.token_hex(8)
        self.answer: Answer | None = None

    def derive(self, prefix: str, size: int = 20) -> str:
        """An id for what this request creates: the same on every retry with the key."""
        if self.key is None:
            return f"{prefix}-{secrets.token_hex(size // 2)}"
        digest = hashlib.sha256(f"{self.platform_id}\0{self.key}".encode()).hexdigest()
        return f"{prefix}-{digest[:size]}"

    def checkpoint(self, point: str) -> None:
        self.faults.hit(point)

    def _judge(self, state: KeyState) -> None:
        if state.request_hash != self.fingerprint:
            raise errors.IdempotencyConflict("this Idempotency-Key was used for a different request")
        if state.status == "done":
            assert state.response_status is not None and state.response_body is not None
            raise Replayed(Answer(status=state.response_status, body=state.response_body))
        if state.leased and state.owner not in (None, self.owner):
            raise errors.IdempotencyInProgress("the first request with this key is still running")

    async def check(self) -> None:
        """Before work that commits nothing (e.g. a foreign call): replay or refuse early."""
        if self.key is None:
            return
        key = self.key
        state = await self.db.read(lambda uow: uow.keys.peek(self.platform_id, key))
        if state is not None:
            self._judge(state)

    async def _transaction(self, work: Callable[[UnitOfWork], Awaitable[T]], grouped: bool) -> T:
        if grouped and self.group is not None:
            return await self.group.run(self.platform_id, work)
        return await self.db.transaction(work)

    async def phase(self, name: str, work: Callable[[UnitOfWork], Awaitable[T]], *, grouped: bool = False) -> T | None:
        """Run one phase; None when an earlier execution committed it already."""
        if self.key is None:
            return await self._transaction(work, grouped)
        key = self.key
        skipped = False

        async def run(uow: UnitOfWork) -> T | None:
            nonlocal skipped
            state = await uow.keys.claim(self.platform_id, key, self.fingerprint)
            self._judge(state)
            if name in state.phases:
                skipped = True
                return None
            result = await work(uow)
            await uow.keys.advance(self.platform_id, key, name, self.owner, self.lease_s)
            self.faults.hit(f"{name}:before_commit")
            return result

        result = await self._transaction(run, grouped)
        if not skipped:
            self.faults.hit(f"{name}:after_commit")
        return result

    async def finish(self, work: Callable[[UnitOfWork], Awaitable[T]], *, grouped: bool = False) -> T:
        """The last phase: its effect and the answer commit together."""
        key = self.key

        async def run(uow: UnitOfWork) -> T:
            if key is not None:
                self._judge(await uow.keys.claim(self.platform_id, key, self.fingerprint))
            result = await work(uow)
            answer = self.encode(result)
            if key is not None:
                await uow.keys.finish(self.platform_id, key, answer.status, answer.body)
            self.faults.hit("finish:before_commit")
            self.answer = answer
            return result

        result = await self._transaction(run, grouped)
        self.faults.hit("finish:after_commit")
        return result

    async def finish_in(self, uow: UnitOfWork, result: object) -> None:
        """Store the answer for ``result`` inside a unit of work a use case opened (its last one)."""
        answer = self.encode(result)
        if self.key is not None:
            self._judge(await uow.keys.claim(self.platform_id, self.key, self.fingerprint))
            await uow.keys.finish(self.platform_id, self.key, answer.status, answer.body)
        self.faults.hit("finish:before_commit")
        self.answer = answer

    async def remember(self, answer: Answer) -> Answer:
        """A refused request (4xx) is an answer too: keep it, unless the key finished meanwhile."""
        if self.key is None:
            return answer
        key = self.key

        async def run(uow: UnitOfWork) -> Answer:
            state = await uow.keys.claim(self.platform_id, key, self.fingerprint)
            if state.request_hash != self.fingerprint:
                raise errors.IdempotencyConflict("this Idempotency-Key was used for a different request")
            if state.status == "done":
                assert state.response_status is not None and state.response_body is not None
                return Answer(status=state.response_status, body=state.response_body)
            await uow.keys.finish(self.platform_id, key, answer.status, answer.body)
            return answer

        return await self.db.transaction(run)

    async def abandon(self) -> None:
        """The request failed for a reason a retry may not meet (5xx): let the next one resume now."""
        if self.key is None:
            return
        key = self.key
        with contextlib.suppress(errors.StoreUnavailable):  # the lease lapses by itself
            await self.db.transaction(lambda uow: uow.keys.release(self.platform_id, key, self.owner))
