"""Shared setup for the marketplace's back-half tests: a platform, sellers, captured orders,
refunds, settlement reports and a snapshot of everything a no-op must leave unchanged.

Every test makes its own platform, so the tests share one database (``market_pool``, one per
session): the schema is tenant-keyed, and sharing it also shows that no query leaks across
platforms. Orders are made the way the service makes them: ``split.allocate`` with a cart policy, then
``orders.insert_order`` and ``orders.capture``; refunds through ``refunds.begin_refund`` and
``refunds.complete_refund``.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg
import msgspec
import pytest

from api.database import create_pool
from api.platforms import create_platform
from ledger import chart, orders, refunds, sellers, split
from ledger.orders import CaptureRequest, Order, OrderPolicy
from ledger.settlement import DEFAULT_MAPPING
from ledger.store import LedgerStore
from tests.conftest import create_test_database, drop_test_database

_ids = itertools.count(1)


@pytest.fixture(scope="session")
async def market_pool(postgres, template_database):
    """One migrated database for all marketplace tests; each test works in its own platform."""
    name = await create_test_database(postgres, template_database)
    pool = await create_pool(postgres.url(name), min_size=1, max_size=8)
    yield pool
    await pool.close()
    await drop_test_database(postgres, name)


@dataclass
class Market:
    pool: asyncpg.Pool
    store: LedgerStore
    pid: str

    async def add_seller(self, seller_id: str) -> None:
        await sellers.create_seller(self.pool, self.store, self.pid, seller_id=seller_id, name=seller_id.title())

    async def add_order(
        self,
        invoice: str,
        items: Mapping[str, int],
        *,
        commission_bps: int = 1_000,
        fee_bps: int = 0,
        fee_fixed: int = 0,
        doku_refunds_fee: bool = False,
        captured_at: datetime | None = None,
        capture: bool = True,
    ) -> Order:
        """An order of one item per seller (``{seller: price}``), captured unless told not to."""
        line_items = [split.LineItem(name=f"item-{s}", price=p, quantity=1, seller_id=s) for s, p in items.items()]
        policy = OrderPolicy(
            split=split.CartPolicy(commission_bps=commission_bps),
            fee=split.FeePolicy(bps=fee_bps, fixed=fee_fixed),
            refund=split.RefundPolicy(doku_refunds_fee=doku_refunds_fee),
        )
        gross = sum(items.values())
        allocation = split.allocate(gross, line_items, policy.split, policy.fee)
        order = await orders.insert_order(
            self.pool, self.pid, invoice_number=invoice, amount=gross, request={"test": True}, policy=policy,
            allocation=allocation, doku_request_id=f"req-{invoice}",
        )
        if capture:
            result = await orders.capture(
                self.pool, self.store, self.pid, CaptureRequest(invoice_number=invoice, amount=gross, at=captured_at)
            )
            assert result.outcome == "captured"
            order = await orders.get_order(self.pool, self.pid, invoice)
        return order

    async def refund(self, invoice: str, amount: int, *, mode: str = "gateway") -> refunds.Refund:
        refund_id = f"rf-{next(_ids)}"
        await refunds.begin_refund(self.pool, self.pid, refund_id=refund_id, invoice_number=invoice, amount=amount,
                                   reason="test", mode=mode)  # type: ignore[arg-type]
        return await refunds.complete_refund(self.pool, self.store, self.pid, refund_id)

    async def order(self, invoice: str) -> Order:
        return await orders.get_order(self.pool, self.pid, invoice)

    async def balance(self, code: str) -> int:
        return await self.store.balance(self.pid, code)

    async def seller(self, seller_id: str) -> dict[str, int]:
        b = await self.store.balances(
            self.pid, [chart.seller_pending(seller_id), chart.seller_available(seller_id), chart.seller_debt(seller_id)]
        )
        return {
            "pending": b[chart.seller_pending(seller_id)],
            "available": b[chart.seller_available(seller_id)],
            "debt": b[chart.seller_debt(seller_id)],
        }

    async def snapshot(self) -> dict[str, object]:
        """Every balance, the trial balance and the row counts a no-op must leave unchanged."""
        trial = await self.store.trial_balance(self.pid)
        counts = {}
        for table in ("journal_entries", "postings", "settlement_reports", "settlement_lines",
                      "reconciliation_exceptions", "payouts"):
            counts[table] = await self.pool.fetchval(f"SELECT count(*) FROM {table} WHERE platform_id = $1", self.pid)
        settled = await self.pool.fetch(
            "SELECT invoice_number, settled_at, settlement_entry_id FROM orders WHERE platform_id = $1 "
            "ORDER BY invoice_number",
            self.pid,
        )
        return {
            "balances": {line.account: line.balance for line in trial.lines},
            "totals": trial.totals,
            "counts": counts,
            "orders": [tuple(r) for r in settled],
        }

    async def exception_kinds(self) -> list[tuple[str, str | None]]:
        rows = await self.pool.fetch(
            "SELECT kind, invoice_number FROM reconciliation_exceptions WHERE platform_id = $1 ORDER BY exception_id",
            self.pid,
        )
        return [(r["kind"], r["invoice_number"]) for r in rows]


async def new_market(pool: asyncpg.Pool, *seller_ids: str) -> Market:
    store = LedgerStore(pool)
    async with pool.acquire() as conn:
        pid, _ = await create_platform(conn, "Test Market")
    # create_platform opens them too (now); harmless and idempotent either way.
    await store.open_accounts(pid, chart.platform_accounts())
    market = Market(pool=pool, store=store, pid=pid)
    for seller_id in seller_ids:
        await market.add_seller(seller_id)
    return market


Line = tuple[str, object, object, object, object]  # invoice, gross, fee, net, settled_on


def line_for(order: Order, settled_on: date | str = "2024-05-03") -> Line:
    """The line DOKU would send for this order."""
    a = order.allocation
    return (order.invoice_number, a.gross, a.fee, a.gross - a.fee, settled_on)


def report_csv(lines: Iterable[Line], *, extra: Mapping[str, str] | None = None) -> bytes:
    """A report in the default mapping's layout (plus unrelated columns DOKU might add)."""
    m = DEFAULT_MAPPING
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["channel", m.invoice_number, m.gross, m.fee, m.net, m.settled_on, *(extra or {})])
    for invoice, gross, fee, net, settled_on in lines:
        writer.writerow(["JENIUS", invoice, gross, fee, net, str(settled_on), *(extra or {}).values()])
    return out.getvalue().encode()


def report_json(lines: Iterable[Line]) -> bytes:
    m = DEFAULT_MAPPING
    return msgspec.json.encode(
        [
            {m.invoice_number: invoice, m.gross: gross, m.fee: fee, m.net: net, m.settled_on: str(settled_on)}
            for invoice, gross, fee, net, settled_on in lines
        ]
    )
