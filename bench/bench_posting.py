"""Ledger posting throughput by batch size: how many balanced entries a second ``LedgerStore.post``
commits when it is handed 1, 10, 100 or 1000 entries per call (one transaction per call).

Every entry is a capture-shaped entry of four postings: DOKU clearing (hot), one of 50 sellers'
pending accounts, platform commission (hot) and DOKU fees (hot). The database's own invariant
triggers are on, as in production.

Run:  python bench/bench_posting.py [--entries 20000]
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
from ledger.journal import build_entry
from ledger.model import AccountSpec
from ledger.service.platforms import create_platform
from ledger.store import Database, LedgerStore

SELLERS = 50


def drafts(prefix: str, count: int) -> list:
    return [
        build_entry(
            kind="capture",
            idempotency_key=f"{prefix}-{i}",
            postings=[
                ("clearing", 100_000),
                (f"seller:{i % SELLERS}", -95_000),
                ("commission", -3_500),
                ("fees", -1_500),
            ],
        )
        for i in range(count)
    ]


async def run(store: LedgerStore, platform_id: str, batch: int, total: int, tag: str) -> float:
    work = drafts(tag, total)
    started = time.perf_counter()
    for i in range(0, total, batch):
        results = await store.post(platform_id, work[i : i + batch])
        assert all(r.__class__.__name__ == "Posted" for r in results)
    return total / (time.perf_counter() - started)


async def main(total: int) -> None:
    async with fresh_database() as url:
        pool = await create_pool(url, min_size=2, max_size=4)
        store = LedgerStore(pool)
        platform_id, _ = await create_platform(Database(pool), "bench")
        await store.open_accounts(
            platform_id,
            [
                AccountSpec(code="clearing", kind="asset"),
                AccountSpec(code="commission", kind="revenue"),
                AccountSpec(code="fees", kind="liability"),
                *(AccountSpec(code=f"seller:{i}", kind="liability") for i in range(SELLERS)),
            ],
        )
        await run(store, platform_id, 500, 10_000, "warm-up")  # history and statistics, as a live ledger has
        await pool.execute("ANALYZE")
        rows = []
        for batch in (1, 10, 100, 1000):
            count = min(total, 2_000) if batch == 1 else total
            rate = await run(store, platform_id, batch, count, f"b{batch}")
            rows.append(
                f"batch {batch:5} entries/call: {rate:8.0f} entries/s  ({rate * 4:8.0f} postings/s, {count} entries)"
            )
        tb = await store.trial_balance(platform_id)
        assert tb.is_balanced
        await pool.close()
    print(f"machine: {machine()}")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().entries))
