"""A flash sale's marketplace for the benchmarks: one platform, many sellers, many pending orders.

Setup only (never measured): sellers, their accounts and the orders are written set-based straight
into the tables, each order with an allocation frozen by ``split.allocate`` exactly as the service
freezes it, crediting 2 or 3 of the sellers; the measured paths then capture them.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import msgspec

from ledger import chart, orders, split
from ledger.model import AccountSpec
from ledger.service.platforms import create_platform
from ledger.store import Database

POLICY = orders.OrderPolicy(
    split=split.CartPolicy(commission_bps=500), fee=split.FeePolicy(bps=150, fixed=1000, bearer="platform")
)
_encode = msgspec.json.encode


@dataclass
class Marketplace:
    platform_id: str
    api_key: str
    sellers: int
    amounts: dict[str, int]  # invoice -> gross


async def create_marketplace(pool: asyncpg.Pool, *, sellers: int, name: str = "Flash Sale") -> Marketplace:
    db = Database(pool)
    platform_id, api_key = await create_platform(db, name)
    ids = [f"s{n:05d}" for n in range(sellers)]
    await pool.execute(
        "INSERT INTO sellers (platform_id, seller_id, name) SELECT $1, s, s FROM unnest($2::text[]) AS s",
        platform_id,
        ids,
    )
    specs: list[AccountSpec] = [spec for s in ids for spec in chart.seller_accounts(s)]
    for start in range(0, len(specs), 5_000):
        await db.ledger.open_accounts(platform_id, specs[start : start + 5_000])
    return Marketplace(platform_id=platform_id, api_key=api_key, sellers=sellers, amounts={})


def _order(invoice: str, sellers: int, rng: random.Random) -> tuple[int, split.Allocation]:
    chosen = rng.sample(range(sellers), rng.choice((2, 3)))
    items = [
        split.LineItem(
            name=f"item {n}",
            price=rng.randrange(20, 400) * 1_000,
            quantity=rng.choice((1, 1, 2)),
            seller_id=f"s{s:05d}",
        )
        for n, s in enumerate(chosen)
    ]
    gross = sum(i.price * i.quantity for i in items)
    return gross, split.allocate(gross, items, POLICY.split, POLICY.fee)


async def add_orders(pool: asyncpg.Pool, market: Marketplace, prefix: str, count: int, *, seed: int = 1) -> list[str]:
    """``count`` pending orders; returns their invoice numbers."""
    rng = random.Random(f"{prefix}-{seed}")
    invoices = [f"{prefix}-{n:07d}" for n in range(count)]
    policy = _encode(POLICY).decode()
    for start in range(0, count, 5_000):
        chunk = invoices[start : start + 5_000]
        built = [_order(i, market.sellers, rng) for i in chunk]
        await pool.execute(
            """
            INSERT INTO orders (platform_id, invoice_number, amount, status, request, policy, allocation,
                                doku_request_id)
            SELECT $1, i, a, 'pending', '{}'::jsonb, $4::text::jsonb, al::jsonb, 'req-' || i
              FROM unnest($2::text[], $3::bigint[], $5::text[]) AS o(i, a, al)
            """,
            market.platform_id,
            chunk,
            [gross for gross, _ in built],
            policy,
            [_encode(allocation).decode() for _, allocation in built],
        )
        market.amounts.update(zip(chunk, (gross for gross, _ in built), strict=True))
    return invoices


def percentiles(latencies: Iterable[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    values = sorted(latencies)
    if len(values) < 2:
        return (values[0] * 1000, values[0] * 1000) if values else (0.0, 0.0)
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


class ServerCpu:
    """CPU seconds used by the PostgreSQL server (postmaster and all its processes), when it runs
    on this machine; None when it cannot be read (a remote DATABASE_URL)."""

    def __init__(self, postmaster_pid: int | None) -> None:
        self.pid = postmaster_pid

    @classmethod
    async def of(cls, conn: asyncpg.Connection) -> ServerCpu:
        data_dir = await conn.fetchval("SELECT current_setting('data_directory')")
        try:
            pid = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return cls(None)
        return cls(pid)

    def seconds(self) -> float | None:
        if self.pid is None:
            return None
        total = 0
        tick = os.sysconf("SC_CLK_TCK")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if entry.name == str(self.pid):  # the postmaster, and the children it has reaped
                total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            elif fields[1] == str(self.pid):  # a live child: backends, walwriter, checkpointer, …
                total += int(fields[11]) + int(fields[12])
        return total / tick


class CpuMeter:
    """Wall time, this process's CPU and the server's CPU over one measured stretch."""

    def __init__(self, server: ServerCpu) -> None:
        self.server = server
        self.wal = 0  # WAL bytes written meanwhile, when the caller measures them

    def __enter__(self) -> CpuMeter:
        self.wall0, self.cpu0, self.srv0 = time.perf_counter(), time.process_time(), self.server.seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        srv1 = self.server.seconds()
        self.srv = None if srv1 is None or self.srv0 is None else srv1 - self.srv0

    def per(self, n: int) -> str:
        server = f"{self.srv / n * 1e6:6.0f}" if self.srv is not None else "     ?"
        return f"CPU per capture: server {server} µs, this process {self.cpu / n * 1e6:6.0f} µs"
