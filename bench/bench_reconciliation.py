"""What telling the truth costs: importing a DOKU report with payment and refund rows, and the
reconciliation with its open items, when every rupiah is explained and when something is not.

One platform, ``--orders`` cart orders of two sellers captured (set-based, ``capture_batch``), a
gateway refund on every tenth, and one report settling ``--settled`` of them with DOKU's deduction
of their refunds. Then:

* the import, in lines a second (chunks of 500 payment lines; refund rows one transaction each);
* the reconciliation, clean (the open items explain the clearing, suspense and fee accounts, so
  no order's postings are read);
* the reconciliation after an adjustment lands in doku:suspense: unexplained, so it also reads each
  order's share of those accounts (every posting of them) to say where.

Run:  python bench/bench_reconciliation.py [--orders 5000] [--settled 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from api.database import create_pool
from bench.common import fresh_database, machine
from ledger import split
from ledger.calendar import WIB
from ledger.orders import CaptureRequest, OrderPolicy
from ledger.service import refunds as refund_service
from ledger.service.capture import capture_batch
from ledger.service.platforms import create_platform
from ledger.service.reconciliation import reconcile
from ledger.service.sellers import SellerDraft, add_seller
from ledger.service.settlement import import_settlement_report
from ledger.store import Database

POLICY = OrderPolicy(split=split.CartPolicy(commission_bps=500), fee=split.FeePolicy(bps=150, fixed=1_000))


def items(n: int) -> list[split.LineItem]:
    return [
        split.LineItem(name="Batik", price=100_000 + n % 997, quantity=1, seller_id="batik"),
        split.LineItem(name="Kopi", price=50_000, quantity=1, seller_id="kopi"),
    ]


async def build(db: Database, pid: str, orders: int) -> None:
    for seller in ("batik", "kopi"):
        await db.transaction(lambda uow, s=seller: add_seller(uow, pid, SellerDraft(seller_id=s, name=s)))
    for start in range(0, orders, 500):

        async def chunk(uow, start: int = start) -> None:
            requests = []
            for n in range(start, min(start + 500, orders)):
                cart = items(n)
                gross = sum(i.price for i in cart)
                allocation = split.allocate(gross, cart, POLICY.split, POLICY.fee)
                await uow.orders.insert(
                    pid,
                    invoice_number=f"INV-{n}",
                    amount=gross,
                    request={},
                    policy=POLICY,
                    allocation=allocation,
                    doku_request_id=f"req-{n}",
                )
                requests.append(CaptureRequest(invoice_number=f"INV-{n}", amount=gross))
            await capture_batch(uow, pid, requests)

        await db.transaction(chunk)
    draft = refund_service.RefundDraft(amount=10_000, reason="bench", mode="gateway")
    for n in range(0, orders, 10):
        await db.transaction(lambda uow, n=n: refund_service.reserve_refund(uow, pid, f"rf-{n}", f"INV-{n}", draft))
        await db.transaction(lambda uow, n=n: refund_service.complete_refund(uow, pid, f"rf-{n}"))


def report(settled: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["type", "invoice_number", "gross_amount", "fee", "net_amount", "settlement_date", "request_id"])
    for n in range(settled):
        gross = sum(i.price for i in items(n))
        fee = POLICY.fee.fee_for(gross)
        writer.writerow(["PAYMENT", f"INV-{n}", gross, fee, gross - fee, "2026-11-26", ""])
    for n in range(0, settled, 10):
        writer.writerow(["REFUND", f"INV-{n}", -10_000, 0, -10_000, "2026-11-26", f"rf-{n}"])
    return out.getvalue().encode()


async def timed(label: str, work) -> tuple[float, object]:
    began = time.perf_counter()
    result = await work()
    elapsed = time.perf_counter() - began
    print(f"  {label}: {elapsed * 1000:,.0f} ms")
    return elapsed, result


async def main(orders: int, settled: int) -> None:
    async with fresh_database() as url:
        pool = await create_pool(url, min_size=2, max_size=4)
        db = Database(pool)
        pid, _ = await create_platform(db, "Bench")
        print(f"machine: {machine()}; {orders} orders, {orders // 10} gateway refunds, {settled} settled")
        began = time.perf_counter()
        await build(db, pid, orders)
        print(f"  setup: {time.perf_counter() - began:,.1f} s")
        content = report(settled)
        lines = settled + (settled + 9) // 10
        marks: list[float] = []
        began = time.perf_counter()

        def progress(done: int, total: int) -> None:
            if done == settled:
                marks.append(time.perf_counter() - began)

        elapsed, summary = await timed(
            f"import of {lines} lines",
            lambda: import_settlement_report(db, pid, source_name="r.csv", content=content, progress=progress),
        )
        payments = marks[0] if marks else elapsed
        print(f"    {settled} payment lines in {payments:,.1f} s ({settled / payments:,.0f} lines/s), "
              f"{lines - settled} refund lines in {elapsed - payments:,.1f} s "
              f"({(lines - settled) / max(elapsed - payments, 1e-9):,.0f} lines/s)")  # fmt: skip
        print(f"    booked {summary.booked}, exceptions {summary.exceptions}, net {summary.net:,}")
        today = datetime.now(WIB).date()

        async def rec():
            return await reconcile(db, pid, period_start=today, period_end=today, today=today)

        for _ in range(3):
            _, clean = await timed("reconciliation, everything explained", rec)
        print(f"    clean={clean.clean} open_items={clean.open_items.count} unexplained={clean.unexplained.total}")
        adjustment = (
            b"type,invoice_number,gross_amount,fee,net_amount,settlement_date\nADJUSTMENT,,,,-2500,2026-11-26\n"
        )
        await import_settlement_report(db, pid, source_name="adj.csv", content=adjustment)
        for _ in range(3):
            _, dirty = await timed("reconciliation, 2 500 unexplained (reads every posting of those accounts)", rec)
        print(f"    clean={dirty.clean} unexplained={dirty.unexplained.by_account}")
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=5_000)
    parser.add_argument("--settled", type=int, default=4_000)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.settled))
