"""Reads at scale: a seller's balances and a statement page with ``--postings`` postings in the ledger.

The ledger is generated inside PostgreSQL (``generate_series``, never through the API): capture
entries of five postings each (DOKU clearing, two of ``--sellers`` sellers' pending accounts, the
platform's commission, DOKU's fee) with correct running balances and versions, in chunks, with
the ledger's triggers switched off for the generating session only (``session_replication_role``)
and every account's stored balance and version brought to its last posting, so the books hold
every invariant when the reads start (checked: trial balance zero, ``ANALYZE`` done, the deferred
check run by one more real posting). Then, one at a time on random sellers, measures p50/p99 of:

  * ``ledger.service.balances.seller_balances`` (what ``GET /v1/sellers/{id}/balances`` runs), now
    and ``as_of`` an instant in the past;
  * ``ledger.service.balances.seller_statement`` first page (100 lines), and the next page by cursor;
  * both warm (a working set of ``--hot`` sellers read before) and cold (each seller's first read:
    its postings are scattered over the table, mostly outside the default 128 MB shared_buffers);
  * the same two over HTTP against ``splitledger serve`` (one worker, one connection at a time).

Run:  python bench/bench_reads.py [--postings 10000000] [--sellers 10000] [--reads 2000]
      (about 10 minutes for 10 million postings on the 2-core machine; the count is printed)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from api.database import create_pool  # noqa: E402
from api.keyring import generate_key  # noqa: E402
from bench.bench_notifications import free_port, load  # noqa: E402
from bench.common import fresh_database, machine  # noqa: E402
from bench.loadgen import write_requests  # noqa: E402
from bench.marketplace import create_marketplace, percentiles  # noqa: E402
from ledger import chart  # noqa: E402
from ledger.journal import build_entry  # noqa: E402
from ledger.service import balances  # noqa: E402
from ledger.store import Database  # noqa: E402

GENERATE = """
WITH gen AS (
    SELECT n,
           ($5::bigint * 7919 + n * 7919) % $4 AS a,
           (($5::bigint * 7919 + n * 7919) % $4 + 1 + (n * 104729) % ($4 - 1)) % $4 AS b,
           10000 + (n * 37) % 90000 AS s1, 5000 + (n * 53) % 50000 AS s2, 500 + n % 1000 AS c, 1000 + n % 700 AS f,
           $6::timestamptz + n * interval '1 millisecond' AS ts
      FROM generate_series($2::bigint, $3::bigint - 1) AS n
), legs AS (
    SELECT n, ts, $7::bigint AS account_id, s1 + s2 + c + f AS amount FROM gen
    UNION ALL SELECT n, ts, ($10::bigint[])[a + 1], -s1 FROM gen
    UNION ALL SELECT n, ts, ($10::bigint[])[b + 1], -s2 FROM gen
    UNION ALL SELECT n, ts, $8::bigint, -c FROM gen
    UNION ALL SELECT n, ts, $9::bigint, -f FROM gen
), numbered AS (
    SELECT l.n, l.ts, l.account_id, l.amount,
           acc.balance + sum(l.amount * acc.normal_sign) OVER w AS balance_after,
           acc.version + row_number() OVER w AS account_version
      FROM legs l JOIN accounts acc ON acc.platform_id = $1 AND acc.account_id = l.account_id
    WINDOW w AS (PARTITION BY l.account_id ORDER BY l.n ROWS UNBOUNDED PRECEDING)
), entries AS (
    INSERT INTO journal_entries (platform_id, entry_id, kind, idempotency_key, content_hash, external_ref,
                                 effective_at, created_at, metadata)
    OVERRIDING SYSTEM VALUE
    SELECT $1, $11::bigint + n, 'capture', 'capture:GEN-' || n, '\\x00'::bytea, 'GEN-' || n, ts, ts,
           jsonb_build_object('invoice_number', 'GEN-' || n)
      FROM gen
)
INSERT INTO postings (platform_id, entry_id, account_id, amount, currency, balance_after, account_version, created_at)
SELECT $1, $11::bigint + n, account_id, amount, 'IDR', balance_after, account_version, ts FROM numbered ORDER BY n
"""

CATCH_UP = """
UPDATE accounts a SET balance = l.balance_after, version = l.account_version
  FROM (SELECT DISTINCT ON (account_id) account_id, balance_after, account_version FROM postings
         WHERE platform_id = $1 AND entry_id >= $2 ORDER BY account_id, account_version DESC) l
 WHERE a.platform_id = $1 AND a.account_id = l.account_id
"""


async def generate(url: str, platform_id: str, sellers: int, postings: int, chunk_entries: int) -> int:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET session_replication_role = replica")  # this session only: no triggers
        await conn.execute("SET work_mem = '256MB'")
        ids = {
            r["code"]: r["account_id"]
            for r in await conn.fetch("SELECT code, account_id FROM accounts WHERE platform_id = $1", platform_id)
        }
        seller_ids = [ids[chart.seller_pending(f"s{n:05d}")] for n in range(sellers)]
        base = await conn.fetchval("SELECT coalesce(max(entry_id), 0) + 1000 FROM journal_entries")
        start = await conn.fetchval("SELECT now() - interval '30 days'")
        entries = postings // 5
        for lo in range(0, entries, chunk_entries):
            hi = min(entries, lo + chunk_entries)
            began = time.perf_counter()
            async with conn.transaction():
                await conn.execute(
                    GENERATE,
                    platform_id,
                    lo,
                    hi,
                    sellers,
                    lo // chunk_entries,
                    start,
                    ids[chart.CLEARING],
                    ids[chart.COMMISSION],
                    ids[chart.FEES_WITHHELD],
                    seller_ids,
                    base,
                )
                await conn.execute(CATCH_UP, platform_id, base + lo)
            print(
                f"  generated {hi * 5:>10} postings ({time.perf_counter() - began:.0f} s for this chunk)",
                file=sys.stderr,
                flush=True,
            )
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('journal_entries', 'entry_id'), $1)", base + entries + 1
        )
        return entries * 5
    finally:
        await conn.close()


async def timed(calls: int, call) -> tuple[float, float]:
    latencies = []
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - began)
    return percentiles(latencies)


async def http_reads(url: str, api_key: str, sellers: int, reads: int, workdir: Path) -> list[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SPLITLEDGER_STATUS_CHECK_ENABLED": "false",
        "SPLITLEDGER_SECRETS_KEY": os.environ.get("SPLITLEDGER_SECRETS_KEY") or generate_key(),
        "SPLITLEDGER_RATE_LIMIT_ENABLED": "false",  # measure the service, not its abuse limits
    }
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, "-m", "api.cli", "serve", "--workers", "1", "--port", str(port), "--no-migrate"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lines = []
    try:
        async with httpx.AsyncClient() as probe:
            for _ in range(300):
                try:
                    if (await probe.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        rng = random.Random(3)
        for label, path in (
            ("GET /v1/sellers/{id}/balances", "/v1/sellers/s{n:05d}/balances"),
            ("GET /v1/sellers/{id}/statement", "/v1/sellers/s{n:05d}/statement?limit=100"),
        ):
            requests = [
                f"GET {path.format(n=rng.randrange(sellers))} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {api_key}\r\n\r\n".encode()
                for _ in range(reads)
            ]
            write_requests(workdir / "reads.bin", requests)
            await load(workdir / "reads.bin", port, 1)  # warm-up, then measured
            result = await load(workdir / "reads.bin", port, 1)
            lines.append(
                f"HTTP {label:34} p50 {float(result['p50_ms']):6.2f} ms  p99 {float(result['p99_ms']):6.2f} ms"  # type: ignore[arg-type]
                f"  answers {result['statuses']}"
            )
    finally:
        server.terminate()
        server.wait(timeout=60)
    return lines


async def main(args: argparse.Namespace) -> None:
    lines = []
    async with fresh_database() as url:
        pool = await create_pool(url, min_size=1, max_size=4)
        db = Database(pool)
        market = await create_marketplace(pool, sellers=args.sellers)
        pid = market.platform_id
        print(f"generating {args.postings} postings ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        generated = await generate(url, pid, args.sellers, args.postings, args.chunk)
        generation_s = time.perf_counter() - began
        await pool.execute("VACUUM ANALYZE accounts")
        await pool.execute("ANALYZE postings")
        await pool.execute("ANALYZE journal_entries")
        # One real posting through the checked path: the database accepts the generated books.
        await db.ledger.post_one(
            pid,
            build_entry(
                kind="capture",
                idempotency_key="after-generation",
                postings=[(chart.CLEARING, 1000), (chart.seller_pending("s00000"), -1000)],
            ),
        )
        tb = await db.ledger.trial_balance(pid)
        assert tb.is_balanced, tb.totals
        count = await pool.fetchval("SELECT count(*) FROM postings WHERE platform_id = $1", pid)
        size = await pool.fetchval("SELECT pg_size_pretty(pg_total_relation_size('postings'))")
        # Cold: sellers read for the first time (their postings mostly outside shared_buffers);
        # warm: a working set of --hot sellers, each read once before.
        rng = random.Random(7)
        order = rng.sample(range(args.sellers), args.sellers)
        hot = [f"s{n:05d}" for n in order[: args.hot]]
        cold = iter(order[args.hot :])

        def warm_seller() -> str:
            return rng.choice(hot)

        def cold_seller() -> str:
            return f"s{next(cold):05d}"

        past = await pool.fetchval("SELECT now() - interval '15 days'")
        for seller_id in hot:
            await balances.seller_balances(db, pid, seller_id, as_of=past)
            page = await balances.seller_statement(db, pid, seller_id, limit=100)
            if page.next_cursor is not None:
                await balances.seller_statement(db, pid, seller_id, after=page.next_cursor, limit=100)
        cursors = {}
        for seller_id in hot:
            cursors[seller_id] = (await balances.seller_statement(db, pid, seller_id, limit=100)).next_cursor
        paged = [s for s, c in cursors.items() if c is not None]

        def second_page() -> object:
            seller_id = rng.choice(paged)
            return balances.seller_statement(db, pid, seller_id, after=cursors[seller_id], limit=100)

        measured = {
            "seller balances (now)": lambda: balances.seller_balances(db, pid, warm_seller()),
            "seller balances (as_of 15 days ago)": lambda: balances.seller_balances(db, pid, warm_seller(), as_of=past),
            "statement, first page (100 lines)": lambda: balances.seller_statement(db, pid, warm_seller(), limit=100),
            "statement, second page (by cursor)": second_page,
            "cold: seller balances (now)": lambda: balances.seller_balances(db, pid, cold_seller()),
            "cold: statement, first page": lambda: balances.seller_statement(db, pid, cold_seller(), limit=100),
        }
        if not paged:
            del measured["statement, second page (by cursor)"]  # no seller has a second page
        for label, call in measured.items():
            p50, p99 = await timed(
                min(args.reads, (args.sellers - args.hot) // 2) if label.startswith("cold") else args.reads, call
            )
            lines.append(f"use case {label:38} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
        with tempfile.TemporaryDirectory(prefix="splitledger-reads-") as scratch:
            lines += await http_reads(url, market.api_key, args.sellers, args.reads, Path(scratch))
        await pool.close()
    print(
        f"machine: {machine()}; {count} postings ({size} with indexes) over {args.sellers} sellers,"
        f" generated in {timedelta(seconds=round(generation_s))}; {args.reads} reads each, one at a time,"
        f" warm = a working set of {args.hot} sellers read before, cold = each seller's first read"
    )
    print("\n".join(lines))
    print(f"reads: {generated} postings generated, trial balance zero")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--postings", type=int, default=10_000_000)
    parser.add_argument("--sellers", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--hot", type=int, default=1_000, help="sellers in the warm working set")
    parser.add_argument("--chunk", type=int, default=250_000, help="entries per generating transaction")
    asyncio.run(main(parser.parse_args()))
