"""Events: what the outbox costs a transaction, how fast the feed reads, how fast the relay delivers.

Prints, on a fresh embedded PostgreSQL (or $DATABASE_URL):

  * transactions/second of a small write (a reconciliation exception opened), without an event and
    with its event (the outbox write, the stream row locked to COMMIT, the fan-out to one
    endpoint), with every writer on one platform (they serialise on its stream row) and spread
    over eight platforms;
  * feed pages/second (limit=100) read through the use case;
  * deliveries/second from the relay to a receiver on loopback answering 204 at once.

Run:  python bench/bench_events.py [--transactions 3000] [--concurrency 32] [--deliveries 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.database import create_pool
from api.webhook_sender import HttpWebhookSender
from bench.common import fresh_database, machine
from ledger.service import events
from ledger.service.events import open_exceptions
from ledger.service.platforms import create_platform
from ledger.service.webhooks import RelaySettings, WebhookRelay
from ledger.store import Database, UnitOfWork
from ledger.store.exceptions import NewException

FOUND = [NewException(kind="unknown_invoice", source="notification", invoice_number="INV-X", actual=1000)]


async def without_event(uow: UnitOfWork, platform_id: str) -> None:
    await uow.exceptions.add(platform_id, FOUND)


async def with_event(uow: UnitOfWork, platform_id: str) -> None:
    await open_exceptions(uow, platform_id, FOUND)


async def writes(db: Database, platforms: list[str], n: int, concurrency: int, evented: bool) -> float:
    work = with_event if evented else without_event
    left = list(range(n))

    async def worker(w: int) -> None:
        platform_id = platforms[w % len(platforms)]
        while left:
            left.pop()
            await db.transaction(lambda uow: work(uow, platform_id))

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return n / (time.perf_counter() - started)


async def receiver() -> tuple[asyncio.Server, list[int]]:
    count = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                count[0] += 1
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), count


async def main(n: int, concurrency: int, deliveries: int) -> None:
    async with fresh_database() as url:
        pool = await create_pool(url, min_size=4, max_size=max(concurrency, 8))
        db = Database(pool)
        one = [(await create_platform(db, "bench one"))[0]]
        eight = [(await create_platform(db, f"bench {i}"))[0] for i in range(8)]
        for platform_id in [*one, *eight]:  # one endpoint each: the fan-out writes a delivery per event
            await pool.execute(
                "INSERT INTO webhook_endpoints (platform_id, endpoint_id, url, events, secret)"
                " VALUES ($1, 'we-bench', 'https://bench.example/h', '{*}', 'whsec_b')",
                platform_id,
            )
        await writes(db, eight, min(n, 500), concurrency, True)  # warm up
        await pool.execute("ANALYZE")
        rows = []
        for label, platforms in (("one platform", one), ("eight platforms", eight)):
            plain = await writes(db, platforms, n, concurrency, False)
            evented = await writes(db, platforms, n, concurrency, True)
            rows.append((label, plain, evented))

        stream = one[0]
        started = time.perf_counter()
        await events.sequence_feed(db, stream)
        sequence_s = time.perf_counter() - started
        last = await db.read(lambda uow: uow.events.last_position(stream))
        started = time.perf_counter()
        pages, cursor = 0, "0"
        while True:
            page = await events.list_events(db, stream, after=cursor, limit=100)
            pages += 1
            cursor = page.next_cursor
            if not page.has_more:
                break
        read_s = time.perf_counter() - started

        # the write phase's deliveries are not the relay's to measure
        await pool.execute("UPDATE webhook_deliveries SET status = 'cancelled' WHERE status = 'pending'")
        await pool.execute("UPDATE webhook_endpoints SET status = 'disabled', disabled_at = now()")
        server, count = await receiver()
        port = server.sockets[0].getsockname()[1]
        target = eight[0]
        await pool.execute(
            "INSERT INTO webhook_endpoints (platform_id, endpoint_id, url, events, secret)"
            " VALUES ($1, 'we-live', $2, '{*}', 'whsec_live')",
            target,
            f"http://127.0.0.1:{port}/hooks",
        )
        for start in range(0, deliveries, 100):  # one event per chain: nothing waits for ordering
            batch = [
                NewException(kind="unknown_invoice", source="notification", invoice_number=f"INV-{i}", actual=1)
                for i in range(start, min(start + 100, deliveries))
            ]
            await db.transaction(lambda uow, batch=batch: open_exceptions(uow, target, batch))
        sender = HttpWebhookSender(timeout_s=10)
        relay = WebhookRelay(db, sender, RelaySettings(concurrency=32, batch=100, poll_interval_s=0.05))
        started = time.perf_counter()
        task = asyncio.create_task(relay.run())
        pending = "SELECT count(*) FROM webhook_deliveries WHERE platform_id = $1 AND status = 'pending'"
        for _ in range(60_000):  # every delivery received and recorded
            if count[0] >= deliveries and not await pool.fetchval(pending, target):
                break
            await asyncio.sleep(0.01)
        deliver_s = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sender.aclose()
        server.close()
        await pool.close()

    print(f"machine: {machine()}; transactions per run: {n}; concurrent writers: {concurrency}")
    for label, plain, evented in rows:
        print(
            f"{label:<16}: {plain:7.0f} tx/s without an event, {evented:7.0f} tx/s with its event "
            f"({(evented / plain - 1) * 100:+.0f} %)"
        )
    print(
        f"sequencing      : {last / sequence_s:7.0f} events/s given their feed positions ({last} in {sequence_s:.2f} s)"
    )
    print(f"feed read       : {pages / read_s:7.0f} pages/s of 100 ({last} events in {read_s:.2f} s)")
    print(f"relay           : {deliveries / deliver_s:7.0f} deliveries/s ({deliveries} in {deliver_s:.2f} s, recorded)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--deliveries", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.transactions, args.concurrency, args.deliveries))
