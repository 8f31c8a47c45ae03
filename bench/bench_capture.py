"""The capture engine under a flash sale: split captures per second through the group-commit batcher.

Every capture debits DOKU clearing and credits 2 or 3 of ``--sellers`` sellers' pending accounts,
the platform's commission and DOKU's fee, so all captures contend for the same three hot rows. In one
run, on one fresh database (``synchronous_commit`` on, as in production), this prints:

  * the engine (``CaptureBatcher``: each capture one member of a group-committed batch; the order
    locked and marked captured, the entry posted through ``LedgerStore.post`` and checked by the
    database's set-based invariant triggers) at 1, 8, 64 and 256 concurrent submitters: captures/s,
    p50/p99 of one capture call, batches, and CPU per capture of the server and of this process;
  * the per-request path (one transaction per capture) at the top concurrency, and the ratio;
  * the ceiling: the same rows (entries and postings, and one balance-row update per batch) written
    with plain COPY into the same tables without any check (triggers and foreign keys off), and the
    same COPY with the checks on;
  * bytes per posting (and per entry) on disk, with indexes;
  * that every order was captured exactly once and the trial balance is zero.

Its last line is ``engine: <N> captures/s at <submitters> submitters``.

Run:  python bench/bench_capture.py --submitters 256 [--captures 20000] [--sellers 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import msgspec

from api.database import create_pool
from bench.common import fresh_database, machine
from bench.marketplace import CpuMeter, Marketplace, ServerCpu, add_orders, create_marketplace, percentiles
from ledger import bookings, chart, split
from ledger.journal import content_hash
from ledger.orders import CaptureRequest
from ledger.service.capture import CaptureBatcher, capture
from ledger.store import Database

LEVELS = (1, 8, 64, 256)


async def drive(invoices: list[str], submitters: int, capture_one) -> list[float]:
    """``submitters`` concurrent callers capture ``invoices``; returns each call's latency."""
    queue = list(reversed(invoices))
    latencies: list[float] = []
    loop = asyncio.get_running_loop()

    async def submitter() -> None:
        while queue:
            invoice = queue.pop()
            started = loop.time()
            await capture_one(invoice)
            latencies.append(loop.time() - started)

    await asyncio.gather(*(submitter() for _ in range(submitters)))
    return latencies


async def engine_run(
    pool: asyncpg.Pool, market: Marketplace, invoices: list[str], submitters: int, args: argparse.Namespace
) -> tuple[float, list[float], CaptureBatcher, CpuMeter]:
    batcher = CaptureBatcher(Database(pool), max_batch=args.max_batch, in_flight=args.in_flight)
    await batcher.start()

    async def one(invoice: str) -> None:
        result = await batcher.capture(
            market.platform_id, CaptureRequest(invoice_number=invoice, amount=market.amounts[invoice])
        )
        assert result.outcome == "captured", result

    async with pool.acquire() as conn:
        server = await ServerCpu.of(conn)
        wal0 = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
    with CpuMeter(server) as meter:
        latencies = await drive(invoices, submitters, one)
    await batcher.stop()
    async with pool.acquire() as conn:
        meter.wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)::bigint", wal0)
    return len(invoices) / meter.wall, latencies, batcher, meter


async def per_request_run(
    pool: asyncpg.Pool, market: Marketplace, invoices: list[str], submitters: int
) -> tuple[float, list[float]]:
    db = Database(pool, acquire_timeout_s=120)  # many more callers than connections: they queue

    async def one(invoice: str) -> None:
        result = await capture(
            db, market.platform_id, CaptureRequest(invoice_number=invoice, amount=market.amounts[invoice])
        )
        assert result.outcome == "captured", result

    started = asyncio.get_running_loop().time()
    latencies = await drive(invoices, submitters, one)
    return len(invoices) / (asyncio.get_running_loop().time() - started), latencies


async def copy_run(
    url: str, market: Marketplace, invoices: list[str], batch: int, *, checks: bool
) -> tuple[float, int]:
    """The same capture rows written with plain COPY (entries, postings) plus one UPDATE of the balance
    rows per transaction of ``batch`` captures; without checks, triggers and foreign keys are off."""
    conn = await asyncpg.connect(url)
    try:
        if not checks:
            await conn.execute("SET session_replication_role = replica")  # no triggers, no foreign keys
        pid = market.platform_id
        accounts = {
            r["code"]: [r["account_id"], r["normal_sign"], r["balance"], r["version"], r["currency"]]
            for r in await conn.fetch(
                "SELECT code, account_id, normal_sign, balance, version, currency FROM accounts WHERE platform_id = $1",
                pid,
            )
        }
        rows = await conn.fetch(
            "SELECT invoice_number, allocation::text AS a FROM orders"
            " WHERE platform_id = $1 AND invoice_number = ANY($2)",
            pid,
            invoices,
        )
        decode = msgspec.json.Decoder(split.Allocation).decode
        drafts = []
        for r in rows:
            a = decode(r["a"])
            drafts.append(
                bookings.capture_entry(
                    r["invoice_number"],
                    gross=a.gross,
                    fee=a.fee,
                    platform=a.platform,
                    sellers={s.seller_id: s.net for s in a.sellers},
                )
            )
        entry_ids = [
            r[0]
            for r in await conn.fetch(
                "SELECT nextval(pg_get_serial_sequence('journal_entries', 'entry_id')) FROM generate_series(1, $1)",
                len(drafts),
            )
        ]
        postings = 0
        started = asyncio.get_running_loop().time()
        for start in range(0, len(drafts), batch):
            now = datetime.now(UTC)
            entries, lines, touched = [], [], set()
            for draft, entry_id in zip(drafts[start : start + batch], entry_ids[start : start + batch], strict=True):
                entries.append(
                    (
                        pid,
                        entry_id,
                        draft.kind,
                        draft.idempotency_key,
                        content_hash(draft),
                        draft.external_ref,
                        False,
                        now,
                        now,
                        msgspec.json.encode(draft.metadata).decode(),
                    )
                )
                for p in draft.postings:
                    acct = accounts[p.account]
                    acct[2] += p.amount * acct[1]
                    acct[3] += 1
                    lines.append((pid, entry_id, acct[0], p.amount, acct[4], acct[2], acct[3], now))
                    touched.add(p.account)
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "journal_entries",
                    records=entries,
                    columns=[
                        "platform_id",
                        "entry_id",
                        "kind",
                        "idempotency_key",
                        "content_hash",
                        "external_ref",
                        "multi_currency",
                        "effective_at",
                        "created_at",
                        "metadata",
                    ],
                )
                await conn.copy_records_to_table(
                    "postings",
                    records=lines,
                    columns=[
                        "platform_id",
                        "entry_id",
                        "account_id",
                        "amount",
                        "currency",
                        "balance_after",
                        "account_version",
                        "created_at",
                    ],
                )
                await conn.execute(
                    """
                    UPDATE accounts a SET balance = s.balance, version = s.version
                      FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS s(account_id, balance, version)
                     WHERE a.platform_id = $1 AND a.account_id = s.account_id
                    """,
                    pid,
                    [accounts[c][0] for c in touched],
                    [accounts[c][2] for c in touched],
                    [accounts[c][3] for c in touched],
                )
            postings += len(lines)
        elapsed = asyncio.get_running_loop().time() - started
        return len(drafts) / elapsed, postings
    finally:
        await conn.close()


async def bytes_on_disk(pool: asyncpg.Pool) -> tuple[float, float, float]:
    row = await pool.fetchrow(
        """
        SELECT pg_total_relation_size('postings')::float8 / greatest(count(*), 1) AS per_posting,
               pg_relation_size('postings')::float8 / greatest(count(*), 1) AS heap_per_posting,
               (SELECT pg_total_relation_size('journal_entries')::float8 / greatest(count(*), 1) FROM journal_entries)
                   AS per_entry
          FROM postings
        """
    )
    return row["per_posting"], row["heap_per_posting"], row["per_entry"]


async def main(args: argparse.Namespace) -> None:
    levels = sorted({level for level in LEVELS if level < args.submitters} | {args.submitters})
    counts = {level: min(args.captures, max(300, level * 80)) for level in levels}
    total = sum(counts.values()) + args.per_request + 2 * counts[args.submitters] + args.warm_up
    lines = []
    async with fresh_database() as url:
        pool = await create_pool(url, min_size=4, max_size=max(20, args.in_flight + 4))
        print(f"setting up {args.sellers} sellers and {total} pending orders ...", file=sys.stderr, flush=True)
        market = await create_marketplace(pool, sellers=args.sellers)
        warm = await add_orders(pool, market, "warm", args.warm_up)
        runs = {level: await add_orders(pool, market, f"e{level}", counts[level]) for level in levels}
        single = await add_orders(pool, market, "single", args.per_request)
        copies = {k: await add_orders(pool, market, f"copy-{k}", counts[args.submitters]) for k in ("plain", "checked")}
        synchronous_commit = await pool.fetchval("SHOW synchronous_commit")

        # History and planner statistics, as a live ledger has (see BENCHMARKS.md).
        await engine_run(pool, market, warm, min(256, args.submitters), args)
        await pool.execute("ANALYZE")

        engine: dict[int, float] = {}
        for level in levels:
            rate, latencies, batcher, meter = await engine_run(pool, market, runs[level], level, args)
            engine[level] = rate
            p50, p99 = percentiles(latencies)
            lines.append(
                f"engine        {level:4d} submitters: {rate:8.0f} captures/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
                f"  ({counts[level]} captures, {batcher.batches} batches, mean {counts[level] / batcher.batches:5.1f};"
                f" {meter.per(counts[level])}, WAL {meter.wal / counts[level]:5.0f} bytes)"
            )
            print(lines[-1], file=sys.stderr, flush=True)
        rate, latencies = await per_request_run(pool, market, single, args.submitters)
        p50, p99 = percentiles(latencies)
        lines.append(
            f"per request   {args.submitters:4d} submitters: {rate:8.0f} captures/s  p50 {p50:7.1f} ms"
            f"  p99 {p99:7.1f} ms  ({args.per_request} captures, one transaction each)"
        )
        lines.append(f"engine / per request at {args.submitters} submitters: {engine[args.submitters] / rate:.1f}x")
        plain_rate, postings = await copy_run(url, market, copies["plain"], args.max_batch, checks=False)
        per_capture = postings / counts[args.submitters]
        lines.append(
            f"ceiling: plain COPY, no checks : {plain_rate:8.0f} captures/s  ({plain_rate * per_capture:8.0f}"
            f" postings/s; entries + postings + one balance update per {args.max_batch})"
        )
        checked_rate, _ = await copy_run(url, market, copies["checked"], args.max_batch, checks=True)
        lines.append(
            f"the same COPY, checks on      : {checked_rate:8.0f} captures/s  (the set-based ledger checks of 0010)"
        )
        lines.append(
            f"engine at {args.submitters} submitters = {engine[args.submitters] / plain_rate:.0%} of the ceiling"
        )
        per_posting, heap_per_posting, per_entry = await bytes_on_disk(pool)
        postings_total = await pool.fetchval("SELECT count(*) FROM postings")
        lines.append(
            f"on disk: {per_posting:.0f} bytes per posting with its indexes ({heap_per_posting:.0f} in the table),"
            f" {per_entry:.0f} bytes per entry with its indexes; {postings_total} postings"
        )

        # Exactly once, and the books balance.
        captured = await pool.fetchval(
            "SELECT count(*) FROM orders WHERE platform_id = $1 AND status = 'captured'", market.platform_id
        )
        entries = await pool.fetchval(
            "SELECT count(*) FROM journal_entries WHERE platform_id = $1 AND kind = 'capture'", market.platform_id
        )
        engine_orders = len(warm) + sum(counts.values()) + args.per_request
        assert captured == engine_orders, (captured, engine_orders)
        assert entries == engine_orders + 2 * counts[args.submitters], entries
        tb = await Database(pool).ledger.trial_balance(market.platform_id)
        assert tb.is_balanced, tb.totals
        assert await Database(pool).ledger.balance(market.platform_id, chart.CLEARING) > 0
        lines.append(f"checked: {captured} orders captured exactly once, trial balance zero")
        await pool.close()

    print(
        f"machine: {machine()}; synchronous_commit={synchronous_commit}; {args.sellers} sellers; "
        f"batches of up to {args.max_batch}, {args.in_flight} in flight"
    )
    print("\n".join(lines))
    print(f"engine: {engine[args.submitters]:.0f} captures/s at {args.submitters} submitters")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--submitters", type=int, default=256, help="the top concurrency (levels 1, 8, 64 below it)")
    parser.add_argument("--captures", type=int, default=20_000, help="captures at the top level")
    parser.add_argument("--sellers", type=int, default=10_000)
    parser.add_argument("--per-request", type=int, default=1_000, help="captures on the one-transaction path")
    parser.add_argument("--warm-up", type=int, default=3_000)
    parser.add_argument("--max-batch", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
