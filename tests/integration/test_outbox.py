"""The outbox on real PostgreSQL: events commit with their change or not at all, get feed positions
in commit order without holes once committed, and a reader paging the feed while writers commit out
of order gets every event exactly once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from api.database import create_pool
from ledger import errors
from ledger.events import NewEvent
from ledger.service import events
from ledger.service.platforms import create_platform
from ledger.store import Database, UnitOfWork


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    pool = await create_pool(database_url, min_size=2, max_size=12)
    yield Database(pool)
    await pool.close()


def payout_event(n: int) -> NewEvent:
    return NewEvent(type="payout.created", data={"n": n}, chain=f"payout:{n}")


async def feed(db: Database, platform_id: str, after: str | None = None) -> list[tuple[int, str]]:
    page = await events.list_events(db, platform_id, after=after, limit=500)
    return [(e.position, e.event_id) for e in page.events]


async def test_an_event_commits_with_its_change_and_vanishes_with_a_rollback(db: Database) -> None:
    platform_id, _ = await create_platform(db, "Toko Outbox")

    async def fails(uow: UnitOfWork) -> None:
        uow.events.emit(platform_id, payout_event(1))
        await uow.conn.execute("SELECT 1")
        raise RuntimeError("the change failed after its event was emitted")

    with pytest.raises(RuntimeError):
        await db.transaction(fails)
    assert await feed(db, platform_id) == []

    async def works(uow: UnitOfWork) -> None:
        uow.events.emit_all(platform_id, [payout_event(2), payout_event(3)])

    await db.transaction(works)
    assert [p for p, _ in await feed(db, platform_id)] == [1, 2]  # the rolled-back one left nothing behind


async def test_a_read_cannot_write_events(db: Database) -> None:
    platform_id, _ = await create_platform(db, "Toko Read")

    async def sneaky(uow: UnitOfWork) -> None:
        uow.events.emit(platform_id, payout_event(1))

    with pytest.raises(AssertionError):
        await db.read(sneaky)
    assert await feed(db, platform_id) == []


async def test_positions_follow_commit_order_not_start_order(db: Database) -> None:
    """A transaction that started first but commits last gets the later position, so a cursor handed
    out while it was running never has to be crossed by it."""
    platform_id, _ = await create_platform(db, "Toko Order")
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(uow: UnitOfWork) -> None:
        await uow.conn.execute("SELECT pg_current_xact_id()")  # it has its transaction id first
        uow.events.emit(platform_id, payout_event(1))
        started.set()
        await release.wait()

    async def quick(uow: UnitOfWork) -> None:
        uow.events.emit(platform_id, payout_event(2))

    slow_task = asyncio.create_task(db.transaction(slow))
    await started.wait()
    await db.transaction(quick)
    page = await events.list_events(db, platform_id)
    assert [e.chain for e in page.events] == ["payout:2"]
    cursor = page.next_cursor
    release.set()
    await slow_task
    later = await events.list_events(db, platform_id, after=cursor)
    assert [(e.position, e.chain) for e in later.events] == [(2, "payout:1")]


async def test_the_feed_paged_by_two_under_concurrent_out_of_order_writers_returns_every_event_once(
    db: Database,
) -> None:
    platform_id, _ = await create_platform(db, "Toko Busy")
    other_id, _ = await create_platform(db, "Toko Other")
    committed: list[int] = []
    rolled_back: list[int] = []
    transactions = 0
    writers_done = asyncio.Event()
    rng = random.Random(13)

    async def writer(w: int) -> None:
        for i in range(8):
            n = w * 100 + i
            count = rng.randint(1, 3)
            pause = rng.random() * 0.02
            fail = rng.random() < 0.15

            async def work(uow: UnitOfWork, n: int = n, count: int = count, pause: float = pause, fail: bool = fail):
                await uow.conn.execute("SELECT pg_current_xact_id()")
                uow.events.emit_all(platform_id, [payout_event(n * 10 + k) for k in range(count)])
                uow.events.emit(other_id, payout_event(n))  # a second platform in the same transaction
                await asyncio.sleep(pause)  # commits overtake each other
                if fail:
                    raise errors.InvalidEntry([("boom", "rolled back")])

            try:
                await db.transaction(work)
                committed.extend(n * 10 + k for k in range(count))
                nonlocal transactions
                transactions += 1
            except errors.InvalidEntry:
                rolled_back.extend(n * 10 + k for k in range(count))

    seen: list[tuple[int, str]] = []

    async def reader() -> None:
        cursor: str | None = None
        while True:
            finished = writers_done.is_set()
            page = await events.list_events(db, platform_id, after=cursor, limit=2)
            positions = [e.position for e in page.events]
            start = int(cursor or 0)
            assert positions == list(range(start + 1, start + 1 + len(positions))), (cursor, positions)
            seen.extend((e.position, e.chain) for e in page.events)
            cursor = page.next_cursor
            if finished and not page.has_more:
                return
            if not page.events:
                await asyncio.sleep(0.001)

    read = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(8)))
    writers_done.set()
    await asyncio.wait_for(read, 30)

    assert rolled_back, "the test must also roll some writers back"
    chains = [c for _, c in seen]
    assert sorted(chains) == sorted(f"payout:{n}" for n in committed)  # every event exactly once
    assert len(set(chains)) == len(chains)
    assert not {f"payout:{n}" for n in rolled_back} & set(chains)
    assert [p for p, _ in seen] == list(range(1, len(committed) + 1))  # contiguous, nothing skipped
    assert [p for p, _ in await feed(db, other_id)] == list(range(1, transactions + 1))


async def test_events_are_immutable_but_for_their_position_given_once(db: Database, database_url: str) -> None:
    platform_id, _ = await create_platform(db, "Toko Immutable")
    await db.transaction(lambda uow: _emit(uow, platform_id))
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.exceptions.RestrictViolationError):
            await conn.execute("UPDATE events SET position = 1, type = 'payout.paid'")
        assert await conn.execute("UPDATE events SET position = 7") == "UPDATE 1"
        for statement in (
            "UPDATE events SET position = 8",
            "UPDATE events SET body = '{}'",
            "DELETE FROM events",
            "TRUNCATE events CASCADE",
        ):
            with pytest.raises(asyncpg.exceptions.RestrictViolationError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def _emit(uow: UnitOfWork, platform_id: str) -> None:
    uow.events.emit(platform_id, payout_event(1))


async def test_a_cursor_may_be_an_event_id_and_a_bad_one_is_refused(db: Database) -> None:
    platform_id, _ = await create_platform(db, "Toko Cursor")
    for n in range(3):
        await db.transaction(lambda uow, n=n: _emit_n(uow, platform_id, n))
    page = await events.list_events(db, platform_id)
    first = page.events[0].event_id
    after_first = await events.list_events(db, platform_id, after=first)
    assert [e.position for e in after_first.events] == [2, 3]
    assert page.next_cursor == "3" and not page.has_more
    empty = await events.list_events(db, platform_id, after=page.next_cursor)
    assert (empty.events, empty.next_cursor, empty.has_more) == ([], "3", False)
    with pytest.raises(errors.InvalidCursor):
        await events.list_events(db, platform_id, after="nope")
    with pytest.raises(errors.EventNotFound):
        await events.list_events(db, platform_id, after="evt_000000000000000000000000")
    with pytest.raises(errors.UnknownEventType):
        await events.list_events(db, platform_id, type_="order.shipped")


async def _emit_n(uow: UnitOfWork, platform_id: str, n: int) -> None:
    uow.events.emit(platform_id, payout_event(n))


@pytest.mark.parametrize("first_commits", [True, False])
async def test_an_event_written_first_but_committed_last_is_never_skipped(db: Database, first_commits: bool) -> None:
    """Writers never wait for each other; an event gets its position only once it is committed, so
    one written earlier (smaller seq) but committed after a reader moved on comes after the cursor."""
    platform_id, _ = await create_platform(db, "Toko Late")
    async with db.pool.acquire() as a, db.pool.acquire() as b:
        first = a.transaction()
        await first.start()
        uow_a = UnitOfWork(a, db.ledger)
        uow_a.events.emit(platform_id, payout_event(1))
        assert await uow_a.flush_events() == 1  # written first: the smaller seq

        second = b.transaction()
        await second.start()
        uow_b = UnitOfWork(b, db.ledger)
        uow_b.events.emit_all(platform_id, [payout_event(2), payout_event(3)])
        assert await asyncio.wait_for(uow_b.flush_events(), 5) == 2  # no waiting on the first writer
        await second.commit()

        page = await events.list_events(db, platform_id)
        assert [(e.position, e.chain) for e in page.events] == [(1, "payout:2"), (2, "payout:3")]
        cursor = page.next_cursor
        await (first.commit() if first_commits else first.rollback())

    later = await events.list_events(db, platform_id, after=cursor)
    assert [(e.position, e.chain) for e in later.events] == ([(3, "payout:1")] if first_commits else [])
    assert [e.position for e in (await events.list_events(db, platform_id)).events] == list(
        range(1, 4 if first_commits else 3)
    )


async def test_two_readers_sequencing_at_once_give_each_event_one_position(db: Database) -> None:
    platform_id, _ = await create_platform(db, "Toko Readers")
    for n in range(300):
        await db.transaction(lambda uow, n=n: _emit_n(uow, platform_id, n))
    pages = await asyncio.gather(*(events.list_events(db, platform_id, limit=500) for _ in range(6)))
    for page in pages:
        assert [e.position for e in page.events] == list(range(1, 301))
        assert sorted(e.chain for e in page.events) == sorted(f"payout:{n}" for n in range(300))
    assert await db.read(lambda uow: uow.events.last_position(platform_id)) == 300
