"""Captures per second on a Citus cluster (coordinator + workers) versus one node, in the same run.

For 1, 4 and 16 platforms (each a marketplace of ``--sellers`` sellers, orders spread evenly), the
same stream of captures goes through the group-commit batcher (``CaptureBatcher``: a batch is one
platform's) at ``--submitters`` concurrent submitters, on:

  * **citus**: a fresh database distributed over the cluster ``--citus-url`` names (a coordinator
    with its workers registered; the database is made on every node, the workers added, migrated);
  * **one node**: a fresh plain database on ``--single-url`` (default: the coordinator's server,
    without the citus extension in the database, so nothing is distributed).

Both with ``synchronous_commit = on`` (set on the bench's connections). Prints one line per run,
then the CPU per capture of each server (coordinator, workers) and of this process, and checks every
order was captured once. Loopback only; the figures are those of this machine.

Run:  python bench/bench_citus.py --citus-url postgresql://postgres@127.0.0.1:9700/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from bench.common import machine
from bench.marketplace import Marketplace, ServerCpu, add_orders, create_marketplace, percentiles
from ledger.orders import CaptureRequest
from ledger.service.capture import CaptureBatcher
from ledger.store import Database
from ledger.store.database import init_connection
from ledger.store.driver import Connection
from migrations.runner import migrate_url

PLATFORMS = (1, 4, 16)


def with_database(url: str, database: str) -> str:
    head, _, rest = url.partition("://")
    netloc, _, _ = rest.partition("/")
    return f"{head}://{netloc}/{database}"


def with_node(url: str, host: str, port: int) -> str:
    head, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    user = netloc.rpartition("@")[0]
    return f"{head}://{user}@{host}:{port}/{path}" if user else f"{head}://{host}:{port}/{path}"


async def run_on(conn_url: str, statements: list[str]) -> None:
    conn = await asyncpg.connect(conn_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def citus_database(admin_url: str, name: str, shard_count: int) -> str:
    admin = await asyncpg.connect(admin_url)
    nodes = await admin.fetch("SELECT nodename, nodeport, groupid FROM pg_dist_node WHERE noderole = 'primary'")
    await admin.close()
    urls = {n["groupid"]: with_node(admin_url, n["nodename"], n["nodeport"]) for n in nodes}
    for url in urls.values():
        await run_on(url, [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"])
        await run_on(with_database(url, name), ["CREATE EXTENSION citus"])
    coordinator = await asyncpg.connect(with_database(admin_url, name))
    for n in sorted(nodes, key=lambda n: n["groupid"]):
        register = "citus_set_coordinator_host" if n["groupid"] == 0 else "citus_add_node"
        await coordinator.execute(f"SELECT {register}($1, $2)", n["nodename"], n["nodeport"])
    await coordinator.close()
    await run_on(with_database(admin_url, name), [f"ALTER DATABASE {name} SET citus.shard_count = {shard_count}"])
    await migrate_url(with_database(admin_url, name))
    return with_database(admin_url, name)


async def plain_database(admin_url: str, name: str) -> str:
    await run_on(admin_url, [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"])
    await migrate_url(with_database(admin_url, name))
    return with_database(admin_url, name)


async def drop_everywhere(admin_url: str, name: str, citus: bool) -> None:
    urls = [admin_url]
    if citus:
        admin = await asyncpg.connect(admin_url)
        nodes = await admin.fetch("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0")
        await admin.close()
        urls += [with_node(admin_url, n["nodename"], n["nodeport"]) for n in nodes]
    for url in urls:
        for _ in range(50):
            try:
                await run_on(url, [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
                break
            except asyncpg.exceptions.ObjectInUseError:
                await asyncio.sleep(0.1)


async def servers(url: str) -> dict[str, ServerCpu]:
    """The CPU meter of every server the database spans: the coordinator (or the one node) and,
    on Citus, each worker (None where a server's processes cannot be read from here)."""
    conn = await asyncpg.connect(url)
    try:
        found = {"coordinator": await ServerCpu.of(conn)}
        if await conn.fetchval("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')"):
            for n in await conn.fetch("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY 1, 2"):
                worker = await asyncpg.connect(with_node(url, n["nodename"], n["nodeport"]))
                try:
                    found[f"worker {n['nodeport']}"] = await ServerCpu.of(worker)
                finally:
                    await worker.close()
    finally:
        await conn.close()
    return found


def cpu_line(before: dict[str, float | None], after: dict[str, float | None], bench_s: float, n: int) -> str:
    parts = [
        f"{name} {(after[name] - b) / n * 1e6:.0f}"
        if (b := before[name]) is not None and after[name] is not None
        else f"{name} ?"
        for name in before
    ]
    return "CPU per capture (µs): " + ", ".join([*parts, f"this process {bench_s / n * 1e6:.0f}"])


async def measure(url: str, platforms: int, args: argparse.Namespace) -> tuple[float, float, float, int, str]:
    pool = await asyncpg.create_pool(
        url,
        init=init_connection,
        connection_class=Connection,
        min_size=2,
        max_size=args.in_flight + 2,
        server_settings={"synchronous_commit": "on"},
    )
    raw = await asyncpg.create_pool(url, min_size=1, max_size=2)  # bench.marketplace writes JSON text itself
    markets: list[Marketplace] = []
    per_platform = args.captures // platforms
    work: list[tuple[Marketplace, str]] = []
    for p in range(platforms):
        market = await create_marketplace(pool, sellers=args.sellers, name=f"Flash Sale {p}")
        markets.append(market)
        for invoice in await add_orders(raw, market, f"P{p}-", per_platform, seed=p + 1):
            work.append((market, invoice))
    work = [work[i] for i in sorted(range(len(work)), key=lambda i: (i % per_platform, i))]  # interleaved
    batcher = CaptureBatcher(Database(pool), max_batch=args.max_batch, in_flight=args.in_flight)
    await batcher.start()
    latencies: list[float] = []
    queue = iter(work)

    async def submitter() -> None:
        for market, invoice in queue:
            started = time.perf_counter()
            result = await batcher.capture(
                market.platform_id, CaptureRequest(invoice_number=invoice, amount=market.amounts[invoice])
            )
            assert result.outcome == "captured", result
            latencies.append(time.perf_counter() - started)

    meters = await servers(url)
    cpu0 = {name: m.seconds() for name, m in meters.items()}
    own0 = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(args.submitters)))
    wall = time.perf_counter() - started
    cpu = cpu_line(cpu0, {name: m.seconds() for name, m in meters.items()}, time.process_time() - own0, len(work))
    await batcher.stop()
    captured = await pool.fetchval("SELECT count(*) FROM journal_entries WHERE kind = 'capture'")
    assert captured == len(work), (captured, len(work))
    await pool.close()
    await raw.close()
    p50, p99 = percentiles(latencies)
    return len(work) / wall, p50, p99, batcher.batches, cpu


async def main(args: argparse.Namespace) -> None:
    single_admin = args.single_url or args.citus_url
    print(f"# bench_citus: {args.captures} captures per run, {args.submitters} submitters, {args.sellers} sellers")
    print(f"# machine: {machine()}; citus {args.citus_url}; one node {single_admin}; synchronous_commit on")
    results: dict[tuple[str, int], float] = {}
    for platforms in PLATFORMS:
        for target in ("one node", "citus"):
            name = f"bench_citus_{os.getpid()}"
            if target == "citus":
                url = await citus_database(args.citus_url, name, args.shard_count)
                admin = args.citus_url
            else:
                url = await plain_database(single_admin, name)
                admin = single_admin
            try:
                rate, p50, p99, batches, cpu = await measure(url, platforms, args)
            finally:
                await drop_everywhere(admin, name, target == "citus")
            results[(target, platforms)] = rate
            print(
                f"{target:>8}: {platforms:>2} platforms: {rate:8.0f} captures/s"
                f"  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  {batches} batches",
                flush=True,
            )
            print(f"          {cpu}", flush=True)
    for platforms in PLATFORMS:
        ratio = results[("citus", platforms)] / results[("one node", platforms)]
        print(f"citus/one node at {platforms:>2} platforms: {ratio:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--citus-url", default=os.environ.get("CITUS_URL"), required=not os.environ.get("CITUS_URL"))
    parser.add_argument("--single-url", help="a server for the one-node runs (default: the coordinator's)")
    parser.add_argument("--captures", type=int, default=4_800)
    parser.add_argument("--submitters", type=int, default=64)
    parser.add_argument("--sellers", type=int, default=200)
    parser.add_argument("--max-batch", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--shard-count", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
