"""A seller's balances and statement, read from the ledger: the statement adds up to the balance."""

from __future__ import annotations

import csv
import io

import pytest

from ledger import errors
from ledger.reports_csv import statement_csv
from ledger.service.balances import seller_balances, seller_statement
from ledger.service.settlement import import_settlement_report
from tests.integration.marketplace_fixtures import (  # noqa: F401 (market_pool is a fixture)
    Market,
    line_for,
    market_pool,
    new_market,
    report_csv,
)


async def story(pool) -> tuple[Market, dict[str, object]]:
    """alice: sold 100 000 (nets 90 000), settled, paid out 60 000, refunded in full, sold 50 000 more."""
    m = await new_market(pool, "alice")
    marks: dict[str, object] = {}
    one = await m.add_order("INV-1", {"alice": 100_000})
    summary = await import_settlement_report(m.db, m.pid, source_name="r.csv", content=report_csv([line_for(one)]))
    marks["report_id"] = summary.report_id
    marks["after_settlement"] = await pool.fetchval("SELECT clock_timestamp()")
    await m.create_payout(payout_id="po-1", seller_id="alice", amount=60_000, mark_paid=True)
    refund = await m.refund("INV-1", 100_000)
    marks["refund_id"] = refund.refund_id
    await m.add_order("INV-2", {"alice": 50_000})
    return m, marks


async def test_balances_now_and_as_of_an_earlier_instant(market_pool):
    m, marks = await story(market_pool)

    now = await seller_balances(m.db, m.pid, "alice")
    assert (now.pending, now.available, now.debt, now.payable) == (45_000, 0, 60_000, -15_000)

    then = await seller_balances(m.db, m.pid, "alice", as_of=marks["after_settlement"])
    assert (then.pending, then.available, then.debt, then.payable) == (0, 90_000, 0, 90_000)
    assert then.as_of == marks["after_settlement"]

    with pytest.raises(errors.SellerNotFound):
        await seller_balances(m.db, m.pid, "nobody")


async def test_the_all_statement_runs_to_payable_with_links_to_what_moved_the_money(market_pool):
    m, marks = await story(market_pool)

    statement = await seller_statement(m.db, m.pid, "alice")

    got = [(line.kind, line.account, line.change, line.balance) for line in statement.lines]
    assert got == [
        ("capture", "pending", 90_000, 90_000),
        ("settlement", "pending", -90_000, 0),
        ("settlement", "available", 90_000, 90_000),
        ("payout", "available", -60_000, 30_000),
        ("refund", "available", -30_000, 0),
        ("refund", "debt", -60_000, -60_000),
        ("capture", "pending", 45_000, -15_000),
    ]
    assert statement.next_cursor is None
    by_kind = {line.kind: line for line in statement.lines}
    assert by_kind["capture"].invoice_number == "INV-2"
    assert by_kind["settlement"].report_id == marks["report_id"]
    assert by_kind["payout"].payout_id == "po-1"
    assert (by_kind["refund"].refund_id, by_kind["refund"].invoice_number) == (marks["refund_id"], "INV-1")


async def test_pages_join_up_to_the_whole_statement(market_pool):
    m, _ = await story(market_pool)
    whole = (await seller_statement(m.db, m.pid, "alice")).lines

    pages, after = [], None
    while True:
        page = await seller_statement(m.db, m.pid, "alice", after=after, limit=3)
        pages.append(page.lines)
        after = page.next_cursor
        if after is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert tuple(line for page in pages for line in page) == whole


async def test_one_account_statement_and_a_time_window(market_pool):
    m, marks = await story(market_pool)

    debt = await seller_statement(m.db, m.pid, "alice", account="debt")
    assert [(line.change, line.balance) for line in debt.lines] == [(60_000, 60_000)]

    available = await seller_statement(m.db, m.pid, "alice", account="available")
    assert [line.balance for line in available.lines] == [90_000, 30_000, 0]

    later = await seller_statement(m.db, m.pid, "alice", since=marks["after_settlement"])
    assert [line.kind for line in later.lines] == ["payout", "refund", "refund", "capture"]
    assert later.lines[0].balance == 30_000  # counts what happened before the window


async def test_statement_csv_has_one_row_per_line(market_pool):
    m, marks = await story(market_pool)
    statement = await seller_statement(m.db, m.pid, "alice")

    rows = list(csv.DictReader(io.StringIO(statement_csv(statement.lines))))

    assert len(rows) == len(statement.lines)
    assert [int(r["balance"]) for r in rows] == [line.balance for line in statement.lines]
    assert rows[1]["report_id"] == marks["report_id"] and rows[3]["payout_id"] == "po-1"
