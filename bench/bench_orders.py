"""Order creation throughput through the use case (create_order: validate, allocate, store, "send"),
with a gateway that accepts at once, so the database work is what is measured: every order of one
platform, or spread over eight. Runs on any revision that has ``ledger.service.orders.create_order``
(compare before and after a change to the write path).

Run:  python bench/bench_orders.py [--orders 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.database import create_pool
from bench.common import fresh_database, machine
from ledger import split
from ledger.orders import OrderDraft
from ledger.service.gateway import Delivered
from ledger.service.gateways import configure_gateway
from ledger.service.idempotency import Answer, Keyed
from ledger.service.orders import create_order
from ledger.service.platforms import create_platform
from ledger.service.sellers import SellerDraft, add_seller
from ledger.store import Database
from ledger.store.gateways import GatewaySettings


class AcceptAll:
    def payment_request(self, *args: object) -> tuple[dict, list]:
        return {}, []

    async def request_payment(self, gateway: object, order: object) -> Delivered:
        return Delivered()


async def platform(db: Database, name: str) -> str:
    platform_id, _ = await create_platform(db, name)
    await configure_gateway(db, platform_id, GatewaySettings(client_id=f"MCH-{platform_id}", secret_key="SK"))
    await db.transaction(lambda uow: add_seller(uow, platform_id, SellerDraft(seller_id="s1", name="S1")))
    return platform_id


async def run(db: Database, platforms: list[str], n: int, concurrency: int, prefix: str) -> float:
    left = list(range(n))
    gateway = AcceptAll()

    async def worker(w: int) -> None:
        platform_id = platforms[w % len(platforms)]
        while left:
            i = left.pop()
            draft = OrderDraft(
                invoice_number=f"{prefix}-{i:07d}",
                amount=50_000,
                line_items=(split.LineItem(name="a", price=50_000, quantity=1, seller_id="s1"),),
                customer={"name": "A", "email": "a@example.com", "phone": None},
                redirect_url="https://x.example",
                cash_tag="$a",
            )
            keyed = Keyed(db, platform_id, f"k-{prefix}-{i}", b"f", lambda _: Answer(status=201, body=b""))
            await create_order(db, gateway, keyed, platform_id, draft)  # type: ignore[arg-type]

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return n / (time.perf_counter() - started)


async def main(n: int, concurrency: int) -> None:
    async with fresh_database() as url:
        pool = await create_pool(url, min_size=4, max_size=max(concurrency, 8))
        db = Database(pool)
        one = [await platform(db, "bench one")]
        eight = [await platform(db, f"bench {i}") for i in range(8)]
        await run(db, eight, min(n, 300), concurrency, "warm")
        await pool.execute("ANALYZE")
        rates = [
            (label, await run(db, ps, n, concurrency, label.replace(" ", "")))
            for label, ps in (
                ("one platform", one),
                ("eight platforms", eight),
            )
        ]
        await pool.close()
    print(f"machine: {machine()}; orders per run: {n}; concurrent callers: {concurrency}")
    for label, rate in rates:
        print(f"{label:<16}: {rate:7.0f} orders/s (two transactions each: created, then sent)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency))
