"""A platform's shard group moves to the other worker while its captures stream: nothing is lost.

DOKU delivers every notification again until it gets an answer (a 503 is not one), so the stream
retries a delivery that failed; at the end every order is captured exactly once, every delivery
answered is in the inbox, every balance is the sum of its account's postings, every entry has its
hash, and the shard group is on the other node.
"""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from ledger.service.capture import CaptureBatcher
from ledger.store import Database
from ledger.store.database import init_connection
from ledger.store.driver import Connection
from tests.integration.test_notification_batches import delivery, market_with_orders, word

pytestmark = pytest.mark.citus

ORDERS = 60


async def test_a_shard_move_while_captures_stream_loses_nothing(cluster_url):
    setup = await asyncpg.create_pool(
        cluster_url, init=init_connection, connection_class=Connection, min_size=1, max_size=4
    )
    markets = [await market_with_orders(setup, *(f"INV-{i}" for i in range(ORDERS))) for _ in range(2)]
    moving = markets[0].pid
    placement = await setup.fetchrow(
        """
        SELECT s.shardid, p.nodename, p.nodeport FROM pg_dist_shard s JOIN pg_dist_placement pl USING (shardid)
          JOIN pg_dist_node p USING (groupid)
         WHERE s.shardid = get_shard_id_for_distribution_column('postings', $1::text)
        """,
        moving,
    )
    target = await setup.fetchrow(
        "SELECT nodename, nodeport FROM pg_dist_node WHERE shouldhaveshards AND noderole = 'primary'"
        " AND (nodename, nodeport) <> ($1, $2) ORDER BY nodeport LIMIT 1",
        placement["nodename"],
        placement["nodeport"],
    )
    logical = await setup.fetchval("SHOW wal_level") == "logical"
    mode = "force_logical" if logical else "block_writes"

    pool = await asyncpg.create_pool(
        cluster_url, init=init_connection, connection_class=Connection, min_size=1, max_size=4
    )
    batcher = CaptureBatcher(Database(pool), max_batch=8, in_flight=2)
    await batcher.start()
    failures = 0
    answered: list[str] = []
    flowing = asyncio.Event()

    async def deliver(pid: str, invoice: str) -> None:
        nonlocal failures
        for _ in range(200):  # DOKU retries until it hears an answer
            try:
                applied = await batcher.apply(pid, word(invoice), delivery(invoice))
            except Exception:
                failures += 1
                await asyncio.sleep(0.05)
                continue
            answered.append(applied.outcome)
            if len(answered) >= 16:
                flowing.set()
            return
        raise AssertionError(f"{invoice} of {pid} never answered")

    async def stream() -> None:
        calls = [(m.pid, f"INV-{i}") for m in markets for i in range(ORDERS)] * 2
        random.Random(15).shuffle(calls)
        for start in range(0, len(calls), 8):  # a steady stream, not one burst
            await asyncio.gather(*(deliver(pid, inv) for pid, inv in calls[start : start + 8]))
            await asyncio.sleep(0.01)

    during: list[int] = []

    async def move() -> None:
        await flowing.wait()  # captures are flowing
        during.append(len(answered))
        async with setup.acquire() as conn:
            await conn.execute(
                "SELECT citus_move_shard_placement($1, $2, $3, $4, $5,"
                " shard_transfer_mode => $6::citus.shard_transfer_mode)",
                placement["shardid"],
                placement["nodename"],
                placement["nodeport"],
                target["nodename"],
                target["nodeport"],
                mode,
            )
        during.append(len(answered))

    try:
        await asyncio.gather(stream(), move())
    finally:
        await batcher.stop()
        await pool.close()

    moved_to = await setup.fetchrow(
        "SELECT p.nodename, p.nodeport FROM pg_dist_placement pl JOIN pg_dist_node p USING (groupid)"
        " WHERE pl.shardid = get_shard_id_for_distribution_column('accounts', $1::text)",
        moving,
    )
    assert (moved_to["nodename"], moved_to["nodeport"]) == (target["nodename"], target["nodeport"])
    assert 0 < during[0] < during[1], during  # deliveries were answered while the shards moved
    total = 2 * ORDERS
    assert len(answered) == 2 * total
    assert sorted(set(answered)) == ["captured", "duplicate"] and answered.count("captured") == total
    for market in markets:
        pid = market.pid
        captures = await setup.fetch(
            "SELECT external_ref, count(*) AS n FROM journal_entries WHERE platform_id = $1 AND kind = 'capture'"
            " GROUP BY external_ref",
            pid,
        )
        assert len(captures) == ORDERS and {r["n"] for r in captures} == {1}, pid
        assert (
            await setup.fetchval("SELECT count(*) FROM orders WHERE platform_id = $1 AND status = 'captured'", pid)
            == ORDERS
        )
        assert (
            await setup.fetchval(
                "SELECT count(*) FROM notifications WHERE platform_id = $1 AND outcome IN ('captured', 'duplicate')",
                pid,
            )
            >= 2 * ORDERS
        )
        off = await setup.fetch(
            """
            SELECT a.code, a.balance, coalesce(sum(p.amount * a.normal_sign), 0) AS posted
              FROM accounts a LEFT JOIN postings p ON p.platform_id = a.platform_id AND p.account_id = a.account_id
             WHERE a.platform_id = $1
             GROUP BY a.code, a.balance
            HAVING a.balance <> coalesce(sum(p.amount * a.normal_sign), 0)
            """,
            pid,
        )
        assert off == [], off
        unhashed = await setup.fetchval(
            "SELECT count(*) FROM journal_entries e WHERE e.platform_id = $1"
            " AND NOT EXISTS (SELECT FROM entry_hashes h"
            "                  WHERE h.platform_id = e.platform_id AND h.entry_id = e.entry_id)",
            pid,
        )
        assert unhashed == 0
    print(f"shard move ({mode}): answers {during[0]}..{during[1]} of {2 * total} during it, {failures} retried")
    await setup.close()
