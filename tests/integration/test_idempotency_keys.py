"""Idempotency keys as recovery points, on real PostgreSQL: phases commit with the key's progress,
a retry resumes after the last committed phase, answers replay byte for byte, leases keep a second
execution out until they lapse, and finished keys are pruned only after the retention period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger import errors
from ledger.service.faults import Faults, InjectedCrash
from ledger.service.idempotency import Answer, Keyed, Replayed
from ledger.service.platforms import create_platform
from ledger.store import Database, UnitOfWork


def encode(result: object) -> Answer:
    return Answer(status=201, body=repr(result).encode())


def keyed(db: Database, pid: str, key: str | None, body: bytes = b"{}", **kwargs: object) -> Keyed:
    return Keyed(db, pid, key, b"fp:" + body, encode, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def db_and_platform(pool) -> tuple[Database, str]:
    db = Database(pool)
    pid, _ = await create_platform(db, "Keys")
    return db, pid


async def count_sellers(db: Database, pid: str) -> int:
    return len(await db.read(lambda uow: uow.sellers.page(pid)))


async def add_seller(uow: UnitOfWork, pid: str, seller_id: str) -> str:
    await uow.sellers.insert(
        pid, seller_id=seller_id, name=seller_id, commission_bps=None, doku_settlement_id=None, metadata={}
    )
    return seller_id


async def test_a_crash_after_a_phase_commits_resumes_after_it_and_never_repeats_it(db_and_platform) -> None:
    db, pid = db_and_platform
    ran: list[str] = []

    async def request(k: Keyed) -> str:
        async def first(uow: UnitOfWork) -> None:
            ran.append("first")
            await add_seller(uow, pid, "s-first")

        await k.phase("first", first)

        async def last(uow: UnitOfWork) -> str:
            ran.append("last")
            return await add_seller(uow, pid, "s-last")

        return await k.finish(last)

    with pytest.raises(InjectedCrash):
        await request(keyed(db, pid, "k1", faults=Faults(["first:after_commit"]), lease_s=0))
    assert ran == ["first"] and await count_sellers(db, pid) == 1

    retry = keyed(db, pid, "k1", lease_s=0)
    assert await request(retry) == "s-last"
    assert ran == ["first", "last"]  # the committed phase was skipped, not repeated
    assert await count_sellers(db, pid) == 2
    assert retry.answer == encode("s-last")

    with pytest.raises(Replayed) as replay:  # and from now on, the answer
        await request(keyed(db, pid, "k1"))
    assert replay.value.answer == encode("s-last") and ran == ["first", "last"]


async def test_a_crash_before_a_phase_commits_leaves_nothing(db_and_platform) -> None:
    db, pid = db_and_platform
    crashing = keyed(db, pid, "k2", faults=Faults(["finish:before_commit"]))
    with pytest.raises(InjectedCrash):
        await crashing.finish(lambda uow: add_seller(uow, pid, "s-1"))
    assert await count_sellers(db, pid) == 0
    assert await db.read(lambda uow: uow.keys.peek(pid, "k2")) is None  # rolled back with the effect
    assert await keyed(db, pid, "k2").finish(lambda uow: add_seller(uow, pid, "s-1")) == "s-1"


async def test_a_different_request_with_the_same_key_is_a_conflict(db_and_platform) -> None:
    db, pid = db_and_platform
    await keyed(db, pid, "k3", b"a").finish(lambda uow: add_seller(uow, pid, "s-a"))
    with pytest.raises(errors.IdempotencyConflict):
        await keyed(db, pid, "k3", b"b").finish(lambda uow: add_seller(uow, pid, "s-b"))
    with pytest.raises(errors.IdempotencyConflict):
        await keyed(db, pid, "k3", b"b").check()
    assert await count_sellers(db, pid) == 1


async def test_a_live_lease_keeps_a_second_execution_out_until_it_lapses(db_and_platform) -> None:
    db, pid = db_and_platform
    first = keyed(db, pid, "k4", lease_s=60)
    await first.phase("reserved", lambda uow: add_seller(uow, pid, "s-4"))
    with pytest.raises(errors.IdempotencyInProgress):
        await keyed(db, pid, "k4").finish(lambda uow: add_seller(uow, pid, "never"))
    await db.transaction(
        lambda uow: uow.conn.execute(
            "UPDATE idempotency_keys SET locked_until = now() - interval '1 second' WHERE platform_id = $1", pid
        )
    )
    taken_over = keyed(db, pid, "k4")
    assert await taken_over.phase("reserved", lambda uow: add_seller(uow, pid, "again")) is None  # skipped
    assert await taken_over.finish(lambda uow: count_sellers_in(uow, pid)) == 1


async def count_sellers_in(uow: UnitOfWork, pid: str) -> int:
    return len(await uow.sellers.page(pid))


async def test_ids_derived_from_the_key_are_the_same_on_every_retry_and_differ_per_platform(db_and_platform) -> None:
    db, pid = db_and_platform
    assert keyed(db, pid, "k5").derive("rf") == keyed(db, pid, "k5").derive("rf")
    assert keyed(db, pid, "k5").derive("rf") != keyed(db, "other", "k5").derive("rf")
    assert keyed(db, pid, None).derive("rf") != keyed(db, pid, None).derive("rf")  # no key: a fresh id


async def test_finished_keys_are_pruned_only_after_the_retention_period(db_and_platform) -> None:
    db, pid = db_and_platform
    for key in ("old", "new"):
        await keyed(db, pid, key).finish(lambda uow, key=key: add_seller(uow, pid, f"s-{key}"))
    await keyed(db, pid, "old-open", lease_s=0).phase("reserved", lambda uow: add_seller(uow, pid, "s-open"))
    await db.transaction(
        lambda uow: uow.conn.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE platform_id = $1 "
            "AND key IN ('old', 'old-open')",
            pid,
        )
    )
    pruned = await db.transaction(lambda uow: uow.keys.prune(pid, datetime.now(UTC) - timedelta(hours=24)))
    assert pruned == 1
    left = await db.read(
        lambda uow: uow.conn.fetch("SELECT key FROM idempotency_keys WHERE platform_id = $1 ORDER BY key", pid)
    )
    assert [r["key"] for r in left] == ["new", "old-open"]  # an unfinished request keeps its recovery point
