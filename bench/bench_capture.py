"""Capture throughput: per-request transactions versus the group-commit batcher.

Every capture debits DOKU clearing and credits the platform's commission and DOKU's fee, so all
captures contend for the same three account rows. This prints captures/second for:

  * one transaction per capture (each takes the hot rows' locks in turn), and
  * the CaptureBatcher (concurrent captures share one transaction and one balance update).

Run:  python bench/bench_capture.py [--orders 4000] [--concurrency 200] [--max-batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from api.database import create_pool
from bench.common import fresh_database, machine
from ledger import chart, orders, split
from ledger.service.capture import CaptureBatcher, capture
from ledger.service.platforms import create_platform
from ledger.service.sellers import SellerDraft, add_seller
from ledger.store import Database, LedgerStore


async def seed(pool: asyncpg.Pool, store: LedgerStore, count: int, prefix: str) -> tuple[str, list[str]]:
    db = Database(pool)
    platform_id, _ = await create_platform(db, f"bench {prefix}")
    for s in ("s1", "s2", "s3"):
        await db.transaction(lambda uow, s=s: add_seller(uow, platform_id, SellerDraft(seller_id=s, name=s)))
    policy = orders.OrderPolicy(split=split.CartPolicy(commission_bps=500), fee=split.FeePolicy(bps=150, fixed=1000))
    invoices = []
    for i in range(count):
        items = (
            split.LineItem(name="a", price=40_000 + i, quantity=1, seller_id="s1"),
            split.LineItem(name="b", price=25_000, quantity=2, seller_id="s2"),
            split.LineItem(name="c", price=15_500, quantity=1, seller_id="s3"),
        )
        gross = sum(x.price * x.quantity for x in items)
        allocation = split.allocate(gross, items, policy.split, policy.fee)
        invoice = f"{prefix}-{i:07d}"
        await db.transaction(
            lambda uow, invoice=invoice, gross=gross, allocation=allocation: uow.orders.insert(
                platform_id,
                invoice_number=invoice,
                amount=gross,
                request={},
                policy=policy,
                allocation=allocation,
                doku_request_id=f"r-{invoice}",
            )
        )
        invoices.append(invoice)
    return platform_id, invoices


async def warm_up(pool: asyncpg.Pool, store: LedgerStore, n: int) -> None:
    """Give the database some history and planner statistics, as a live one has.

    A freshly created database has none: PostgreSQL then plans the triggers' lookups for empty
    tables (sequential scans) and caches those plans, and that would be measured instead.
    """
    platform_id, invoices = await seed(pool, store, n, "warm-up")
    batcher = CaptureBatcher(Database(pool))
    await batcher.start()
    amounts = {
        r["invoice_number"]: r["amount"]
        for r in await pool.fetch("SELECT invoice_number, amount FROM orders WHERE platform_id = $1", platform_id)
    }
    await asyncio.gather(
        *(batcher.capture(platform_id, orders.CaptureRequest(invoice_number=i, amount=amounts[i])) for i in invoices)
    )
    await batcher.stop()
    await pool.execute("ANALYZE")


async def run_concurrently(invoices: list[str], concurrency: int, capture_one) -> float:
    queue = list(reversed(invoices))

    async def worker() -> None:
        while queue:
            await capture_one(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def main(n: int, concurrency: int, max_batch: int) -> None:
    async with fresh_database() as url:
        pool = await create_pool(url, min_size=4, max_size=20)
        store = LedgerStore(pool)
        amounts: dict[str, int] = {}
        await warm_up(pool, store, n)

        platform_b, invoices_b = await seed(pool, store, n, "batched")
        for inv in invoices_b:
            amounts[inv] = await pool.fetchval(
                "SELECT amount FROM orders WHERE platform_id = $1 AND invoice_number = $2", platform_b, inv
            )
        batcher = CaptureBatcher(Database(pool), max_batch=max_batch)
        await batcher.start()

        async def batched(inv: str) -> None:
            result = await batcher.capture(platform_b, orders.CaptureRequest(invoice_number=inv, amount=amounts[inv]))
            assert result.outcome == "captured"

        elapsed_batched = await run_concurrently(invoices_b, concurrency, batched)
        await batcher.stop()

        # Second: the same captures, one transaction each (after the batched run, so the hot rows'
        # dead versions it leaves behind do not slow the batched run down).
        platform_a, invoices_a = await seed(pool, store, n, "single")
        for inv in invoices_a:
            amounts[inv] = await pool.fetchval(
                "SELECT amount FROM orders WHERE platform_id = $1 AND invoice_number = $2", platform_a, inv
            )

        async def single(inv: str) -> None:
            result = await capture(
                Database(pool), platform_a, orders.CaptureRequest(invoice_number=inv, amount=amounts[inv])
            )
            assert result.outcome == "captured"

        elapsed_single = await run_concurrently(invoices_a, concurrency, single)
        for platform_id in (platform_a, platform_b):
            tb = await store.trial_balance(platform_id)
            assert tb.is_balanced, tb.totals
            captured = await store.balance(platform_id, chart.CLEARING)
            assert captured > 0
        await pool.close()

    print(f"machine: {machine()}; orders per run: {n}; concurrent callers: {concurrency}")
    print(f"one transaction per capture : {n / elapsed_single:8.0f} captures/s  ({elapsed_single:.2f} s)")
    print(
        f"group-commit batcher        : {n / elapsed_batched:8.0f} captures/s  ({elapsed_batched:.2f} s, "
        f"{batcher.batches} transactions, mean batch {batcher.captures / max(batcher.batches, 1):.1f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--max-batch", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency, args.max_batch))
