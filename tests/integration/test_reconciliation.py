"""The morning reconciliation on real PostgreSQL: a clean story is clean; late money, open
exceptions and disagreeing balances are each reported by name."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

from ledger.calendar import WIB
from ledger.reports_csv import reconciliation_csv
from ledger.service.reconciliation import reconcile
from ledger.service.settlement import import_settlement_report
from tests.integration.marketplace_fixtures import (  # noqa: F401 (market_pool is a fixture)
    Market,
    line_for,
    market_pool,
    new_market,
    report_csv,
)


def days_ago(n: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)


async def run(m: Market, **kwargs):
    today = datetime.now(WIB).date()
    return await reconcile(
        m.db, m.pid, period_start=today - timedelta(days=14), period_end=today, today=today, **kwargs
    )


async def clean_story(pool) -> Market:
    """Two orders settled, refunds both ways, one payout paid and one in transit, one order not yet due."""
    m = await new_market(pool, "alice", "bob")
    one = await m.add_order("INV-1", {"alice": 100_000}, fee_bps=100, captured_at=days_ago(6))
    two = await m.add_order("INV-2", {"bob": 50_000}, fee_bps=100, captured_at=days_ago(5))
    settled_on = datetime.now(WIB).date() - timedelta(days=2)
    await import_settlement_report(
        m.db, m.pid, source_name="r.csv", content=report_csv([line_for(one, settled_on), line_for(two, settled_on)])
    )
    await m.refund("INV-1", 10_000, mode="gateway")
    await m.refund("INV-2", 5_000, mode="manual")
    await m.create_payout(payout_id="po-1", seller_id="alice", amount=50_000, mark_paid=True)
    await m.create_payout(payout_id="po-2", seller_id="bob", amount=20_000)
    await m.add_order("INV-3", {"alice": 30_000}, fee_bps=100)  # captured now: not due yet
    return m


async def test_a_clean_story_reconciles_clean_with_every_figure(market_pool):
    m = await clean_story(market_pool)

    rec = await run(m)

    assert rec.issues == () and rec.clean is True
    assert (rec.captured.count, rec.captured.amount, rec.doku_fees) == (3, 180_000, 1_000 + 500 + 300)
    assert (rec.refunded_gateway.count, rec.refunded_gateway.amount) == (1, 10_000)
    assert (rec.refunded_manual.count, rec.refunded_manual.amount) == (1, 5_000)
    assert (rec.settled.lines, rec.settled.gross, rec.settled.fee, rec.settled.net) == (2, 150_000, 1_500, 148_500)
    owed = rec.owed_by_doku
    assert (owed.unsettled.count, owed.unsettled.amount, owed.overdue.count) == (1, 30_000, 0)
    assert owed.clearing_balance == 30_000 - 10_000  # the gateway refund DOKU has not netted yet
    payouts = rec.payouts
    assert (payouts.pending.amount, payouts.paid.amount, payouts.in_transit_balance) == (20_000, 50_000, 20_000)
    sellers = rec.owed_to_sellers
    assert sellers.allocated == 90_000 + 45_000 + 27_000
    assert sellers.reversed == 9_000 + 4_500
    assert sellers.paid_out == 50_000
    assert sellers.expected == sellers.ledger == 162_000 - 13_500 - 50_000
    assert (sellers.difference, sellers.sellers) == (0, ())
    assert rec.trial_balance_zero is True and rec.open_exceptions == 0

    earlier = await reconcile(m.db, m.pid, period_start=date(2024, 1, 1), period_end=date(2024, 1, 31))
    assert (earlier.captured.count, earlier.settled.lines, earlier.refunded_gateway.count) == (0, 0, 0)
    assert earlier.clean is True  # positions (owed, balances) are as of now, whatever the period


async def test_late_settlement_and_an_open_exception_are_listed_and_not_clean(market_pool):
    m = await clean_story(market_pool)
    await m.add_order("INV-OLD", {"bob": 20_000}, captured_at=days_ago(10))
    summary = await import_settlement_report(
        m.db, m.pid, source_name="r2.csv", content=report_csv([("INV-GHOST", 7_000, 0, 7_000, "2024-05-03")])
    )

    rec = await run(m)

    assert rec.clean is False
    assert [issue.code for issue in rec.issues] == ["settlement_overdue", "unexplained_money", "open_exceptions"]
    assert [(o.invoice_number, o.amount) for o in rec.owed_by_doku.overdue_orders] == [("INV-OLD", 20_000)]
    # Past T+2 the order no longer explains the money it holds in clearing.
    assert rec.unexplained.by_account == {"doku:clearing": 20_000}
    assert [(u.invoice_number, u.account, u.amount, u.reason) for u in rec.unexplained.by_order] == [
        ("INV-OLD", "doku:clearing", 20_000, "settlement_overdue")
    ]
    late = rec.owed_by_doku.overdue_orders[0]
    assert late.working_days_late >= 4 and late.age_working_days == late.working_days_late + 2
    assert (rec.owed_by_doku.overdue.count, rec.owed_by_doku.overdue.amount) == (1, 20_000)
    assert rec.open_exceptions == 1
    (ghost,) = rec.exceptions
    assert (ghost.kind, ghost.invoice_number, ghost.actual, ghost.report_id, ghost.line_no) == (
        "unknown_invoice",
        "INV-GHOST",
        7_000,
        summary.report_id,
        1,
    )

    rows = list(csv.reader(io.StringIO(reconciliation_csv(rec))))
    assert rows[0] == ["section", "metric", "value", "detail"]
    assert rows[[r[:2] for r in rows].index(["result", "clean"])][:3] == ["result", "clean", "NO"]
    assert ["overdue order", "INV-OLD", "20000"] in [r[:3] for r in rows]
    assert ["open exception", "unknown_invoice", "7000"] in [r[:3] for r in rows]
    assert {r[1] for r in rows if r[0] == "issue"} == {"settlement_overdue", "unexplained_money", "open_exceptions"}
    assert ["unexplained", "settlement_overdue", "20000"] in [r[:3] for r in rows]


async def test_resolved_exceptions_and_a_longer_settlement_delay_make_it_clean_again(market_pool):
    m = await clean_story(market_pool)
    await m.add_order("INV-OLD", {"bob": 20_000}, captured_at=days_ago(10))
    await import_settlement_report(
        m.db, m.pid, source_name="r2.csv", content=report_csv([("INV-GHOST", 7_000, 0, 7_000, "2024-05-03")])
    )
    await m.pool.execute("UPDATE reconciliation_exceptions SET resolved_at = now() WHERE platform_id = $1", m.pid)

    rec = await run(m, settlement_days=30)

    assert rec.clean is True and rec.owed_by_doku.unsettled.count == 2


async def test_sellers_balances_that_disagree_with_orders_and_payouts_are_named(market_pool):
    m = await clean_story(market_pool)
    # A payout marked paid behind the ledger's back: the money never left in the ledger.
    await m.pool.execute("UPDATE payouts SET status = 'paid' WHERE platform_id = $1 AND payout_id = 'po-2'", m.pid)

    rec = await run(m)

    assert rec.clean is False
    assert [issue.code for issue in rec.issues] == ["sellers_differ", "payouts_in_transit_differ"]
    (bob,) = rec.owed_to_sellers.sellers
    assert (bob.seller_id, bob.difference) == ("bob", 20_000)
    assert rec.owed_to_sellers.difference == 20_000


async def test_other_platforms_do_not_leak_into_a_reconciliation(market_pool):
    noisy = await clean_story(market_pool)
    await noisy.add_order("INV-OLD", {"bob": 20_000}, captured_at=days_ago(10))
    quiet = await new_market(market_pool, "carol")

    rec = await run(quiet)

    assert rec.clean is True
    assert (rec.captured.count, rec.owed_by_doku.unsettled.count, rec.owed_to_sellers.allocated) == (0, 0, 0)
    assert isinstance(rec.period_start, date)
