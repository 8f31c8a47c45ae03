"""Shared setup for the marketplace's back-half tests: a platform, sellers, captured orders,
refunds, settlement reports and a snapshot of everything a no-op must leave unchanged.

Every test makes its own platform, so the tests share one database (``market_pool``, one per
session): the schema is tenant-keyed, and sharing it also shows that no query leaks across
platforms. Orders are made the way the service makes them: ``split.allocate`` with a cart policy, then
the orders table's insert and ``capture.capture``; refunds through the refund use case with a gateway
that always says yes (``AlwaysYes``) or as manual refunds.
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
from ledger import chart, refunds, split
from ledger.orders import CaptureRequest, Order, OrderPolicy
from ledger.payouts import Payout
from ledger.service import capture as capture_service
from ledger.service import payouts
from ledger.service import refunds as refund_service
from ledger.service.gateway import Delivered, Outcome, PaymentStatus
from ledger.service.idempotency import Answer, Keyed
from ledger.service.payouts import PayoutDraft, request_payout
from ledger.service.platforms import create_platform
from ledger.service.sellers import SellerDraft, add_seller
from ledger.settlement_report import DEFAULT_MAPPING
from ledger.store import Database, LedgerStore
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


class AlwaysYes:
    """A payment gateway that accepts everything (the use cases take any ``PaymentGateway``)."""

    def payment_request(self, *args: object) -> tuple[dict, list]:
        return {}, []

    async def request_payment(self, gateway: object, order: object) -> Outcome:
        return Delivered()

    async def refund(self, gateway: object, refund: object) -> Outcome:
        return Delivered()

    async def check_status(self, gateway: object, invoice_number: str) -> PaymentStatus:
        raise AssertionError("not used")

    def base_urls(self) -> set[str]:
        return set()


def plain(db: Database, pid: str) -> Keyed:
    """A request without an Idempotency-Key."""
    return Keyed(db, pid, None, b"", lambda _: Answer(status=200, body=b""))


@dataclass
class Market:
    pool: asyncpg.Pool
    db: Database
    pid: str

    @property
    def store(self) -> LedgerStore:
        return self.db.ledger

    async def add_seller(self, seller_id: str) -> None:
        draft = SellerDraft(seller_id=seller_id, name=seller_id.title())
        await self.db.transaction(lambda uow: add_seller(uow, self.pid, draft))

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
        order = await self.db.transaction(
            lambda uow: uow.orders.insert(
                self.pid,
                invoice_number=invoice,
                amount=gross,
                request={"test": True},
                policy=policy,
                allocation=allocation,
                doku_request_id=f"req-{invoice}",
            )
        )
        if capture:
            result = await capture_service.capture(
                self.db, self.pid, CaptureRequest(invoice_number=invoice, amount=gross, at=captured_at)
            )
            assert result.outcome == "captured"
            order = await self.order(invoice)
        return order

    async def refund(self, invoice: str, amount: int, *, mode: str = "gateway") -> refunds.Refund:
        draft = refund_service.RefundDraft(
            amount=amount,
            reason="test",
            mode=mode,  # type: ignore[arg-type]
        )
        refund_id = f"rf-{next(_ids)}"
        await self.db.transaction(lambda uow: refund_service.reserve_refund(uow, self.pid, refund_id, invoice, draft))
        return await self.db.transaction(lambda uow: refund_service.complete_refund(uow, self.pid, refund_id))

    async def create_payout(
        self, *, payout_id: str, seller_id: str, amount: int, reference: str | None = None, mark_paid: bool = False
    ) -> Payout:
        """A payout with the id given (the API derives it from the Idempotency-Key)."""
        draft = PayoutDraft(seller_id=seller_id, amount=amount, reference=reference, mark_paid=mark_paid)
        return await self.db.transaction(lambda uow: request_payout(uow, self.pid, payout_id, draft))

    async def confirm_payout(self, payout_id: str, *, reference: str | None = None) -> Payout:
        return await payouts.confirm_payout(self.db, plain(self.db, self.pid), self.pid, payout_id, reference=reference)

    async def fail_payout(self, payout_id: str, *, reason: str) -> Payout:
        return await payouts.fail_payout(self.db, plain(self.db, self.pid), self.pid, payout_id, reason=reason)

    async def get_payout(self, payout_id: str) -> Payout:
        return await payouts.get_payout(self.db, self.pid, payout_id)

    async def list_payouts(self, **filters: object) -> list[Payout]:
        return await payouts.list_payouts(self.db, self.pid, **filters)  # type: ignore[arg-type]

    async def order(self, invoice: str) -> Order:
        return await self.db.read(lambda uow: uow.orders.get(self.pid, invoice))

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
        for table in (
            "journal_entries",
            "postings",
            "settlement_reports",
            "settlement_lines",
            "reconciliation_exceptions",
            "payouts",
        ):
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
    db = Database(pool)
    pid, _ = await create_platform(db, "Test Market")
    market = Market(pool=pool, db=db, pid=pid)
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
