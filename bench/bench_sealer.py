"""Capture throughput with the hash-chain sealer off and on, in the same run.

Entry hashes are computed in every posting transaction either way (a statement-level trigger); what
this measures is the sealer: a background task chaining and signing blocks while captures stream.
Runs alternate (off, on, off, on …) on fresh platforms so drift on a shared machine hits both.

Run:  python bench/bench_sealer.py [--orders 3000] [--concurrency 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.database import create_pool
from bench.common import fresh_database, machine
from ledger import orders, split
from ledger.service.capture import CaptureBatcher
from ledger.service.platforms import create_platform
from ledger.service.sealer import Sealer, Signer
from ledger.service.sellers import SellerDraft, add_seller
from ledger.store import Database, UnitOfWork

POLICY = orders.OrderPolicy(split=split.CartPolicy(commission_bps=500), fee=split.FeePolicy(bps=150, fixed=1000))


async def seed(db: Database, count: int, name: str) -> tuple[str, dict[str, int]]:
    platform_id, _ = await create_platform(db, name)
    for s in ("s1", "s2", "s3"):
        await db.transaction(lambda uow, s=s: add_seller(uow, platform_id, SellerDraft(seller_id=s, name=s)))
    amounts: dict[str, int] = {}

    async def insert(uow: UnitOfWork) -> None:
        for i in range(count):
            items = (
                split.LineItem(name="a", price=40_000 + i, quantity=1, seller_id="s1"),
                split.LineItem(name="b", price=25_000, quantity=2, seller_id="s2"),
                split.LineItem(name="c", price=15_500, quantity=1, seller_id="s3"),
            )
            gross = sum(x.price * x.quantity for x in items)
            invoice = f"{name}-{i:07d}"
            await uow.orders.insert(
                platform_id,
                invoice_number=invoice,
                amount=gross,
                request={},
                policy=POLICY,
                allocation=split.allocate(gross, items, POLICY.split, POLICY.fee),
                doku_request_id=f"r-{invoice}",
            )
            amounts[invoice] = gross

    await db.transaction(insert)
    return platform_id, amounts


async def run(
    db: Database, platform_id: str, amounts: dict[str, int], concurrency: int, sealer: Sealer | None
) -> float:
    batcher = CaptureBatcher(db)
    await batcher.start()
    queue = list(amounts)
    task = None
    if sealer is not None:
        task = asyncio.create_task(sealer.run())

    async def worker() -> None:
        while queue:
            invoice = queue.pop()
            result = await batcher.capture(
                platform_id, orders.CaptureRequest(invoice_number=invoice, amount=amounts[invoice])
            )
            assert result.outcome == "captured"

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await batcher.stop()
    return len(amounts) / elapsed


async def main(n: int, concurrency: int, rounds: int) -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    async with fresh_database() as url:
        pool = await create_pool(url, min_size=4, max_size=20)
        db = Database(pool)
        warm_id, warm = await seed(db, n, "warm")
        await run(db, warm_id, warm, concurrency, None)
        await pool.execute("ANALYZE")
        figures: dict[str, list[float]] = {"off": [], "on": []}
        for r in range(rounds):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                platform_id, amounts = await seed(db, n, f"{mode}{r}")
                sealer = Sealer(db, signer, interval_s=0.2) if mode == "on" else None
                figures[mode].append(await run(db, platform_id, amounts, concurrency, sealer))
        final = Sealer(db, signer)
        await final.seal_once()
        await pool.close()
    off, on = statistics.median(figures["off"]), statistics.median(figures["on"])
    print(machine())
    print(f"orders per run: {n}; concurrent callers: {concurrency}; rounds: {rounds}")
    print("sealer off : " + ", ".join(f"{x:,.0f}" for x in figures["off"]) + " captures/s")
    print("sealer on  : " + ", ".join(f"{x:,.0f}" for x in figures["on"]) + " captures/s")
    print(f"sealer: {on:,.0f} vs {off:,.0f} captures/s (median), difference {100 * (on - off) / off:+.1f} %")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency, args.rounds))
