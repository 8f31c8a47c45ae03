"""Refunds after a flash sale: refunds per second through the group commit, against one transaction each.

Every refund reverses part of a captured split order: it locks the order, then DOKU clearing (or
the platform's bank for a manual refund), the platform's commission and 2 or 3 sellers' accounts,
so refunds contend for the same hot rows the captures do. Each runs as the API runs it: under its
own Idempotency-Key (a reserve phase, then the booking with the key's answer), here as manual
refunds so no DOKU call sits between the phases. In one run, on one fresh database
(``synchronous_commit`` on), it prints refunds/s and p50/p99 of one refund:

  * grouped: both phases through ``GroupCommitter`` (one transaction per platform for whatever is
    queued, each refund in its own savepoint);
  * per request: the same use case with no committer (one transaction per phase);

and checks that every refund was booked exactly once and the trial balance is zero.

Run:  python bench/bench_refunds.py [--refunds 3000] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

from api.database import create_pool
from bench.common import fresh_database, machine
from bench.marketplace import CpuMeter, Marketplace, ServerCpu, add_orders, create_marketplace, percentiles
from ledger.orders import CaptureRequest
from ledger.service import refunds
from ledger.service.capture import CaptureBatcher
from ledger.service.faults import NO_FAULTS
from ledger.service.groupcommit import GroupCommitter
from ledger.service.idempotency import Answer, Keyed
from ledger.store import Database

_encode = msgspec.json.encode


class NoGateway:
    """Manual refunds never call DOKU."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"DOKU was called: {name}")


async def refund_all(
    db: Database, market: Marketplace, invoices: list[str], concurrency: int, group: GroupCommitter | None
) -> tuple[float, list[float], CpuMeter]:
    queue = list(reversed(invoices))
    latencies: list[float] = []
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        while queue:
            invoice = queue.pop()
            keyed = Keyed(
                db,
                market.platform_id,
                f"refund-{invoice}",
                invoice.encode(),
                lambda result: Answer(status=201, body=_encode(result)),
                faults=NO_FAULTS,
                group=group,
            )
            draft = refunds.RefundDraft(amount=market.amounts[invoice] // 3, reason="returned", mode="manual")
            started = loop.time()
            refund = await refunds.create_refund(db, NoGateway(), keyed, market.platform_id, invoice, draft)  # type: ignore[arg-type]
            latencies.append(loop.time() - started)
            assert refund.status == "succeeded", refund

    async with db.pool.acquire() as conn:
        server = await ServerCpu.of(conn)
    with CpuMeter(server) as meter:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(invoices) / meter.wall, latencies, meter


async def main(args: argparse.Namespace) -> None:
    lines = []
    async with fresh_database() as url:
        pool = await create_pool(url, min_size=4, max_size=20)
        db = Database(pool, acquire_timeout_s=120)  # many more callers than connections: they queue
        print(f"setting up {args.sellers} sellers and {2 * args.refunds} captured orders ...", file=sys.stderr)
        market = await create_marketplace(pool, sellers=args.sellers)
        runs = {name: await add_orders(pool, market, name, args.refunds) for name in ("grouped", "single")}
        batcher = CaptureBatcher(db)
        await asyncio.gather(
            *(
                batcher.capture(market.platform_id, CaptureRequest(invoice_number=i, amount=market.amounts[i]))
                for run in runs.values()
                for i in run
            )
        )
        await batcher.stop()
        await pool.execute("ANALYZE")
        synchronous_commit = await pool.fetchval("SHOW synchronous_commit")

        rates = {}
        for name in ("grouped", "single"):
            group = (
                GroupCommitter(db, max_batch=args.max_batch, in_flight=args.in_flight) if name == "grouped" else None
            )
            rate, latencies, meter = await refund_all(db, market, runs[name], args.concurrency, group)
            rates[name] = rate
            p50, p99 = percentiles(latencies)
            shape = ""
            if group is not None:
                await group.stop()
                shape = f"; {group.groups} transactions, mean {group.members / group.groups:5.1f} phases each"
            lines.append(
                f"{'grouped' if group else 'per request'} {args.concurrency:4d} concurrent: {rate:7.0f} refunds/s"
                f"  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  ({args.refunds} refunds{shape}; {meter.per(args.refunds)})"
            )
            print(lines[-1], file=sys.stderr, flush=True)

        booked = await pool.fetchval(
            "SELECT count(*) FROM journal_entries WHERE platform_id = $1 AND kind = 'refund'", market.platform_id
        )
        assert booked == 2 * args.refunds, booked
        tb = await db.ledger.trial_balance(market.platform_id)
        assert tb.is_balanced, tb.totals
        lines.append(f"checked: {booked} refunds booked exactly once, trial balance zero")
        await pool.close()

    print(f"machine: {machine()}; synchronous_commit={synchronous_commit}; {args.sellers} sellers")
    print("\n".join(lines))
    print(f"refunds: {rates['grouped']:.0f}/s grouped, {rates['single']:.0f}/s one transaction each")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--refunds", type=int, default=3_000, help="refunds in each of the two runs")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--sellers", type=int, default=10_000)
    parser.add_argument("--max-batch", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
