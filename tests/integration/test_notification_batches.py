"""The group commit of DOKU's notifications on real PostgreSQL: a notification is one batch member,
whole (inbox row, capture entry, order update, reconciliation exception in its batch's one
transaction), acknowledged only after that commit; several workers against one database capture
each order exactly once, without deadlocks, and a batch stuck on a lock holds up no other."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from api.database import create_pool
from ledger import chart
from ledger.service.capture import CaptureBatcher, Member, PaymentWord, apply_words
from ledger.service.faults import Faults, InjectedCrash
from ledger.store import Database
from ledger.store.inbox import Delivery
from tests.integration.marketplace_fixtures import Market, new_market

ITEMS = {"s1": 60_000, "s2": 40_000}
GROSS = 100_000


def word(invoice: str, amount: int = GROSS, status: str = "SUCCESS") -> PaymentWord:
    return PaymentWord(invoice_number=invoice, amount=amount, status=status)


def delivery(invoice: str | None, *, outcome: str = "pending", request_id: str | None = None) -> Delivery:
    return Delivery(
        request_id=request_id or f"req-{random.getrandbits(40)}",
        invoice_number=invoice,
        transaction_status="SUCCESS" if invoice else None,
        amount=GROSS if invoice else None,
        body=b"{}",
        outcome=outcome,
    )


async def market_with_orders(pool: asyncpg.Pool, *invoices: str) -> Market:
    market = await new_market(pool, "s1", "s2")
    for invoice in invoices:
        await market.add_order(invoice, ITEMS, capture=False)
    return market


async def inbox(market: Market) -> list[tuple[str | None, str]]:
    rows = await market.pool.fetch(
        "SELECT invoice_number, outcome FROM notifications WHERE platform_id = $1 ORDER BY notification_id", market.pid
    )
    return [(r["invoice_number"], r["outcome"]) for r in rows]


async def captured_entries(market: Market) -> int:
    return await market.pool.fetchval(
        "SELECT count(*) FROM journal_entries WHERE platform_id = $1 AND kind = 'capture'", market.pid
    )


async def test_one_transaction_writes_every_members_inbox_row_capture_and_exception(pool):
    market = await market_with_orders(pool, "INV-1", "INV-2", "INV-3")
    members = [
        Member(word=word("INV-1"), delivery=delivery("INV-1")),
        Member(word=word("INV-1"), delivery=delivery("INV-1")),  # DOKU's duplicate, same batch
        Member(word=word("INV-2", GROSS - 1), delivery=delivery("INV-2")),  # amount mismatch
        Member(word=word("INV-NOBODY"), delivery=delivery("INV-NOBODY")),
        Member(word=word("INV-3", status="EXPIRED"), delivery=delivery("INV-3")),
        Member(word=word("INV-3")),  # a status check's SUCCESS after the EXPIRED: a conflict, no inbox row
        Member(delivery=delivery(None, outcome="invalid_signature")),  # refused before it was applied
    ]
    applied = await market.db.transaction(lambda uow: apply_words(uow, market.pid, members))
    assert [a.outcome for a in applied] == [
        "captured",
        "duplicate",
        "amount_mismatch",
        "unknown_invoice",
        "closed",
        "conflict",
        "invalid_signature",
    ]
    assert await inbox(market) == [
        ("INV-1", "captured"),
        ("INV-1", "duplicate"),
        ("INV-2", "amount_mismatch"),
        ("INV-NOBODY", "unknown_invoice"),
        ("INV-3", "closed"),
        (None, "invalid_signature"),
    ]
    assert await market.exception_kinds() == [
        ("amount_mismatch", "INV-2"),
        ("unknown_invoice", "INV-NOBODY"),
        ("status_conflict", "INV-3"),
    ]
    assert [(await market.order(i)).status for i in ("INV-1", "INV-2", "INV-3")] == ["captured", "created", "expired"]
    assert await captured_entries(market) == 1
    assert await market.balance(chart.CLEARING) == GROSS
    assert (await market.store.trial_balance(market.pid)).is_balanced


async def conflicts(market: Market) -> list[tuple[str | None, list[str], list[str]]]:
    """Each status_conflict: its invoice, DOKU's words in its evidence, what the order was then."""
    rows = await market.pool.fetch(
        "SELECT invoice_number, detail FROM reconciliation_exceptions WHERE platform_id = $1 "
        "AND kind = 'status_conflict' ORDER BY exception_id",
        market.pid,
    )
    return [
        (
            r["invoice_number"],
            [e["doku_status"] for e in r["detail"]["evidence"]],
            [e["order_status"] for e in r["detail"]["evidence"]],
        )
        for r in rows
    ]


async def test_contradictions_in_a_batch_move_no_money_and_each_order_gets_one_conflict_with_every_word(pool):
    """SUCCESS after FAILED, FAILED or TIMEOUT after SUCCESS, in the batched path: outcome ``conflict``
    in the inbox (0020's outcome), one status_conflict per order carrying every contradicting word of
    the batch (and of later batches), each with its exception_opened event; no money moves."""
    market = await market_with_orders(pool, "INV-1", "INV-2")
    first = [
        Member(word=word("INV-1"), delivery=delivery("INV-1")),
        Member(word=word("INV-2", status="FAILED"), delivery=delivery("INV-2")),
        Member(word=word("INV-1", status="FAILED"), delivery=delivery("INV-1")),  # after its SUCCESS
        Member(word=word("INV-2"), delivery=delivery("INV-2")),  # after its FAILED
        Member(word=word("INV-1", status="TIMEOUT"), delivery=delivery("INV-1")),
        Member(word=word("INV-2", status="EXPIRED"), delivery=delivery("INV-2")),  # failed already: nothing
    ]
    applied = await market.db.transaction(lambda uow: apply_words(uow, market.pid, first))
    assert [a.outcome for a in applied] == ["captured", "closed", "conflict", "conflict", "conflict", "ignored"]
    assert await inbox(market) == [
        ("INV-1", "captured"),
        ("INV-2", "closed"),
        ("INV-1", "conflict"),
        ("INV-2", "conflict"),
        ("INV-1", "conflict"),
        ("INV-2", "ignored"),
    ]
    assert await conflicts(market) == [
        ("INV-1", ["FAILED", "TIMEOUT"], ["captured", "captured"]),
        ("INV-2", ["SUCCESS"], ["failed"]),
    ]
    assert [(await market.order(i)).status for i in ("INV-1", "INV-2")] == ["captured", "failed"]
    assert await captured_entries(market) == 1
    assert await market.balance(chart.CLEARING) == GROSS

    # A later batch adds to the open conflict instead of opening another.
    again = [Member(word=word("INV-2"), delivery=delivery("INV-2"))]
    assert [a.outcome for a in await market.db.transaction(lambda uow: apply_words(uow, market.pid, again))] == [
        "conflict"
    ]
    assert await conflicts(market) == [
        ("INV-1", ["FAILED", "TIMEOUT"], ["captured", "captured"]),
        ("INV-2", ["SUCCESS", "SUCCESS"], ["failed", "failed"]),
    ]
    opened = await market.pool.fetchval(
        "SELECT count(*) FROM events WHERE platform_id = $1 AND type = 'reconciliation.exception_opened'", market.pid
    )
    assert opened == 2
    assert await captured_entries(market) == 1
    assert (await market.store.trial_balance(market.pid)).is_balanced


async def test_a_batch_that_dies_before_commit_leaves_nothing_and_acknowledges_no_one(pool):
    market = await market_with_orders(pool, "INV-1", "INV-2")
    faults = Faults(["capture_batch:before_commit"])
    batcher = CaptureBatcher(market.db, faults=faults, in_flight=1)
    await batcher.start()
    try:
        answers = await asyncio.gather(
            *(batcher.apply(market.pid, word(i), delivery(i)) for i in ("INV-1", "INV-2", "INV-1")),
            return_exceptions=True,
        )
        assert all(isinstance(a, InjectedCrash) for a in answers), answers
        assert await inbox(market) == []
        assert await captured_entries(market) == 0
        assert [(await market.order(i)).status for i in ("INV-1", "INV-2")] == ["created", "created"]
        # DOKU delivers again: now each order is captured once, and the inbox holds what was answered
        again = [await batcher.apply(market.pid, word(i), delivery(i)) for i in ("INV-1", "INV-2")]
        assert [a.outcome for a in again] == ["captured", "captured"]
        assert await inbox(market) == [("INV-1", "captured"), ("INV-2", "captured")]
    finally:
        await batcher.stop()


async def test_an_answer_lost_after_commit_is_a_duplicate_when_doku_delivers_again(pool):
    market = await market_with_orders(pool, "INV-1")
    batcher = CaptureBatcher(market.db, faults=Faults(["capture_batch:after_commit"]))
    await batcher.start()
    try:
        with pytest.raises(InjectedCrash):
            await batcher.apply(market.pid, word("INV-1"), delivery("INV-1"))
        assert await inbox(market) == [("INV-1", "captured")]  # committed, though nobody heard
        assert (await batcher.apply(market.pid, word("INV-1"), delivery("INV-1"))).outcome == "duplicate"
        assert await captured_entries(market) == 1
    finally:
        await batcher.stop()


async def test_one_bad_member_does_not_sink_its_batch(pool):
    market = await market_with_orders(pool, "INV-1", "INV-2")
    batcher = CaptureBatcher(market.db)
    await batcher.start()
    try:
        answers = await asyncio.gather(
            batcher.apply(market.pid, word("INV-1"), delivery("INV-1")),
            batcher.apply(market.pid, None, delivery(None, outcome="not-an-outcome")),  # the inbox refuses it
            batcher.apply(market.pid, word("INV-2"), delivery("INV-2")),
            return_exceptions=True,
        )
        assert [getattr(a, "outcome", None) for a in answers] == ["captured", None, "captured"]
        assert isinstance(answers[1], Exception)
        assert await inbox(market) == [("INV-1", "captured"), ("INV-2", "captured")]
    finally:
        await batcher.stop()


async def deadlocks(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")


async def test_two_workers_capture_each_order_exactly_once_without_deadlocks(database_url):
    """Two workers (a pool and a batcher each) get every notification of 120 orders, most of them
    twice and in random order, for two platforms; every call is answered, each order captured once."""
    pools = [await create_pool(database_url, min_size=1, max_size=4) for _ in range(2)]
    try:
        markets = [await market_with_orders(pools[0]) for _ in range(2)]
        invoices = [f"INV-{n:03d}" for n in range(60)]
        for market in markets:
            for invoice in invoices:
                await market.add_order(invoice, ITEMS, capture=False)
        before = await deadlocks(pools[0])
        batchers = [CaptureBatcher(Database(p), max_batch=16, in_flight=2) for p in pools]
        for b in batchers:
            await b.start()
        calls = [(m, i) for m in markets for i in invoices for _ in range(2)]
        random.Random(7).shuffle(calls)

        async def deliver(n: int, market: Market, invoice: str) -> str:
            await asyncio.sleep(random.random() * 0.05)
            batcher = batchers[n % 2]
            return (await batcher.apply(market.pid, word(invoice), delivery(invoice))).outcome

        outcomes = await asyncio.wait_for(
            asyncio.gather(*(deliver(n, m, i) for n, (m, i) in enumerate(calls))), timeout=120
        )
        for b in batchers:
            await b.stop()
        assert sorted(set(outcomes)) == ["captured", "duplicate"]
        assert outcomes.count("captured") == len(markets) * len(invoices)
        for market in markets:
            assert await captured_entries(market) == len(invoices)
            assert len(await inbox(market)) == 2 * len(invoices)
            assert await market.balance(chart.CLEARING) == len(invoices) * GROSS
            assert (await market.store.trial_balance(market.pid)).is_balanced
        assert await deadlocks(pools[0]) == before
    finally:
        for p in pools:
            await p.close()


async def test_a_batch_waiting_on_a_lock_holds_up_no_other(pool):
    """An order row held by someone else (a slow refund, say) stalls only the batch that needs it."""
    market = await market_with_orders(pool, "INV-SLOW", "INV-1", "INV-2")
    batcher = CaptureBatcher(market.db, in_flight=2)
    await batcher.start()
    holder = await pool.acquire()
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "SELECT 1 FROM orders WHERE platform_id = $1 AND invoice_number = 'INV-SLOW' FOR UPDATE", market.pid
        )
        slow = asyncio.create_task(batcher.apply(market.pid, word("INV-SLOW"), delivery("INV-SLOW")))
        await asyncio.sleep(0.3)  # its batch is now waiting for the row
        others = await asyncio.wait_for(
            asyncio.gather(*(batcher.apply(market.pid, word(i), delivery(i)) for i in ("INV-1", "INV-2"))), timeout=10
        )
        assert [a.outcome for a in others] == ["captured", "captured"]
        assert not slow.done()
        await tx.rollback()
        assert (await asyncio.wait_for(slow, timeout=10)).outcome == "captured"
    finally:
        await pool.release(holder)
        await batcher.stop()
