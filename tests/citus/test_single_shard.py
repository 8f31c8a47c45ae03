"""Every capture transaction stays on one platform's shards: one node, one connection, one shard group.

The proof is what the coordinator sends the workers (citus.log_remote_commands): every distributed
transaction of a stream of captures over several platforms (in shard groups on both workers) is
sent over one connection to one node, names shards of one co-location shard group only, its
platform's, and ends in a plain COMMIT: never PREPARE TRANSACTION (a two-phase commit), and Citus
records no distributed transaction in pg_dist_transaction. (The rows of a batch are written as
multi-row VALUES lists, which Citus routes to one shard; the INSERT … SELECT from arrays used on one
server would be copied in through a two-phase commit: ledger/store/values.py.)
The statements that find and lock rows by key are single-task router plans.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg
import pytest

from ledger.service.capture import CaptureBatcher
from ledger.store import Database
from ledger.store.database import init_connection
from ledger.store.driver import Connection
from tests.integration.test_notification_batches import delivery, market_with_orders, word

pytestmark = pytest.mark.citus

_TXN = re.compile(r"assign_distributed_transaction_id\(\s*\d+\s*,\s*(\d+)")
_SHARD = re.compile(r"_(\d{6,})\b")
_SERVER = re.compile(r"on server \S+@(\S+:\d+) connectionId: (\d+)")


@dataclass
class RemoteTransaction:
    nodes: set[str] = field(default_factory=set)
    connections: set[tuple[int, str]] = field(default_factory=set)
    shards: set[int] = field(default_factory=set)
    commands: list[str] = field(default_factory=list)


def remote_transactions(notices: list[tuple[int, str, str]]) -> dict[int, RemoteTransaction]:
    """Group the commands the coordinator issued by the distributed transaction they belong to."""
    current: dict[tuple[int, str], int] = {}  # (our connection, its remote connection) -> transaction
    found: dict[int, RemoteTransaction] = defaultdict(RemoteTransaction)
    for ours, message, detail in notices:
        server = _SERVER.search(detail or "")
        if not message.startswith("issuing ") or server is None:
            continue
        node, connection = server.group(1), (ours, server.group(2))
        started = _TXN.search(message)
        if started:
            current[connection] = int(started.group(1))
        txn = current.get(connection)
        if txn is None:
            continue
        found[txn].nodes.add(node)
        found[txn].connections.add(connection)
        found[txn].shards.update(int(s) for s in _SHARD.findall(message))
        found[txn].commands.append(message)
    return found


async def test_a_stream_of_captures_of_many_platforms_never_leaves_a_platform_s_shard_group(cluster_url):
    setup = await asyncpg.create_pool(
        cluster_url, init=init_connection, connection_class=Connection, min_size=1, max_size=4
    )
    markets = [await market_with_orders(setup, *(f"INV-{i}" for i in range(12))) for _ in range(4)]
    groups = {
        r["shardid"]: r["shardminvalue"]
        for r in await setup.fetch(
            "SELECT s.shardid, s.shardminvalue FROM pg_dist_shard s JOIN pg_dist_partition p USING (logicalrelid)"
            " WHERE p.partmethod = 'h'"
        )
    }
    group_of = {
        m.pid: await setup.fetchval(
            "SELECT shardminvalue FROM pg_dist_shard"
            " WHERE shardid = get_shard_id_for_distribution_column('accounts', $1::text)",
            m.pid,
        )
        for m in markets
    }
    assert len(set(group_of.values())) >= 2  # the platforms live in more than one shard group

    notices: list[tuple[int, str, str]] = []

    def keep(conn: asyncpg.Connection, message: asyncpg.PostgresLogMessage) -> None:
        notices.append((id(conn), message.message, message.detail))

    async def listen(conn: asyncpg.Connection) -> None:  # on every acquire (a release drops listeners)
        conn.add_log_listener(keep)

    pool = await asyncpg.create_pool(
        cluster_url,
        init=init_connection,
        setup=listen,
        connection_class=Connection,
        min_size=2,
        max_size=2,
        server_settings={"citus.log_remote_commands": "on"},
    )
    prepared_before = await setup.fetchval("SELECT count(*) FROM pg_dist_transaction")
    batcher = CaptureBatcher(Database(pool), max_batch=8, in_flight=2)
    await batcher.start()
    try:
        calls = [(m.pid, f"INV-{i}") for m in markets for i in range(12)] * 2  # every notification twice
        random.Random(15).shuffle(calls)
        answers = await asyncio.gather(*(batcher.apply(pid, word(inv), delivery(inv)) for pid, inv in calls))
    finally:
        await batcher.stop()
        await pool.close()
    assert sorted(a.outcome for a in answers) == ["captured"] * 48 + ["duplicate"] * 48
    assert batcher.batches >= 8

    transactions = remote_transactions(notices)
    assert len(transactions) >= batcher.batches
    for txn, remote in transactions.items():
        assert len(remote.nodes) == 1, (txn, remote.nodes)
        hashed = {groups[s] for s in remote.shards if s in groups}
        assert len(hashed) == 1, (txn, remote.commands)
        assert hashed <= set(group_of.values())
        assert len(remote.connections) == 1, (txn, remote.commands)
        prepared = [c for c in remote.commands if c.startswith("issuing PREPARE TRANSACTION")]
        assert prepared == [], (txn, remote.commands)
        assert any(c == "issuing COMMIT" for c in remote.commands), (txn, remote.commands)
    assert await setup.fetchval("SELECT count(*) FROM pg_dist_transaction") == prepared_before
    await setup.close()


async def test_the_statements_that_find_and_lock_a_capture_s_rows_are_single_task_router_plans(cluster_url):
    setup = await asyncpg.create_pool(
        cluster_url, init=init_connection, connection_class=Connection, min_size=1, max_size=2
    )
    market = await market_with_orders(setup, "INV-1", "INV-2")
    statements: list[tuple[str, tuple[object, ...]]] = []

    async def init(conn: asyncpg.Connection) -> None:
        await init_connection(conn)
        conn.add_query_logger(lambda q: statements.append((q.query, q.args)))

    pool = await asyncpg.create_pool(cluster_url, init=init, connection_class=Connection, min_size=1, max_size=1)
    batcher = CaptureBatcher(Database(pool))
    try:
        await asyncio.gather(*(batcher.apply(market.pid, word(i), delivery(i)) for i in ("INV-1", "INV-2")))
    finally:
        await batcher.stop()
        await pool.close()
    keyed = {
        q: args
        for q, args in statements
        if re.search(r"^\s*(SELECT|UPDATE|WITH locked)\b", q) and "platform_id = $1" in q and "unnest($2" not in q
    }
    keyed |= {q: args for q, args in statements if q.lstrip().startswith("UPDATE orders")}
    inserts = {q: args for q, args in statements if q.lstrip().startswith("INSERT")}
    assert len(keyed) >= 3  # the orders' lock, the accounts' lock and idempotency keys, the orders' update
    # the entries, their postings, the inbox rows and the events: every row of a batch is written
    assert {re.search(r"INSERT INTO (\w+)", q).group(1) for q in inserts} >= {  # type: ignore[union-attr]
        "journal_entries",
        "postings",
        "notifications",
        "events",
    }
    keyed |= inserts
    async with setup.acquire() as conn:
        for query, args in keyed.items():
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + query, *args))
            assert "Custom Scan (Citus Adaptive)" in plan and "Task Count: 1" in plan, plan
            assert "Distributed Subplan" not in plan, plan
    await setup.close()
