"""Importing DOKU settlement reports on real PostgreSQL: bookings, idempotency, exceptions, debt."""

from __future__ import annotations

import asyncio
import time
from datetime import date

import msgspec
import pytest

from jenius.sandbox_report import SettlementRow, render_csv
from ledger import chart, errors
from ledger.orders import CaptureRequest
from ledger.service.capture import capture_batch
from ledger.service.settlement import get_report, import_settlement_report
from ledger.settlement_report import mapping_from_spec
from tests.integration.marketplace_fixtures import (  # noqa: F401 (market_pool is a fixture)
    Market,
    line_for,
    market_pool,
    new_market,
    report_csv,
    report_json,
)


async def _import(m: Market, content: bytes, **kwargs):
    return await import_settlement_report(m.db, m.pid, source_name="report.csv", content=content, **kwargs)


async def test_import_books_net_to_bank_closes_clearing_and_fees_and_releases_sellers(market_pool):
    m = await new_market(market_pool, "alice", "bob")
    one = await m.add_order("INV-1", {"alice": 60_000, "bob": 40_000}, fee_bps=150)
    two = await m.add_order("INV-2", {"bob": 20_000}, fee_bps=150)
    assert await m.seller("alice") == {"pending": 54_000, "available": 0, "debt": 0}

    summary = await _import(m, report_csv([line_for(one), line_for(two)]))

    assert (summary.lines, summary.booked, summary.exceptions) == (2, 2, {})
    assert (summary.gross, summary.fee, summary.net) == (120_000, 1_800, 118_200)
    assert summary.already_imported is False
    assert await m.balance(chart.BANK) == 118_200
    assert await m.balance(chart.CLEARING) == 0
    assert await m.balance(chart.FEES_WITHHELD) == 0
    assert await m.seller("alice") == {"pending": 0, "available": 54_000, "debt": 0}
    assert await m.seller("bob") == {"pending": 0, "available": 36_000 + 18_000, "debt": 0}
    assert await m.balance(chart.COMMISSION) == 10_000 - 1_500 + 2_000 - 300
    settled = await m.order("INV-1")
    assert settled.settled_at is not None and settled.settlement_entry_id is not None
    entry = await m.store.get_entry(m.pid, settled.settlement_entry_id)
    assert entry.kind == "settlement" and entry.metadata["report_id"] == summary.report_id
    assert (await m.store.trial_balance(m.pid)).is_balanced


async def test_same_report_twice_changes_nothing_and_returns_the_first_summary(market_pool):
    m = await new_market(market_pool, "alice")
    one = await m.add_order("INV-1", {"alice": 50_000}, fee_bps=100)
    content = report_csv([line_for(one), ("NOPE-1", 10_000, 0, 10_000, "2024-05-03")])
    first = await _import(m, content)
    before = await m.snapshot()

    again = await _import(m, content)

    assert await m.snapshot() == before
    assert again.already_imported is True
    # The open exception was looked at again (the invoice is still unknown), nothing else changed.
    assert (again.reevaluated, again.rebooked) == (1, 0)
    drop = ("already_imported", "reevaluated", "rebooked")
    assert msgspec_fields(again, drop=drop) == msgspec_fields(first, drop=drop)
    assert first.exceptions == {"unknown_invoice": 1}


def msgspec_fields(struct, *, drop: tuple[str, ...]) -> dict:
    data = msgspec.to_builtins(struct)
    for name in drop:
        data.pop(name)
    return data


async def test_unknown_invoice_wrong_amounts_and_unreadable_lines_become_exceptions_and_post_nothing(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 50_000}, fee_bps=100)  # fee 500
    await m.add_order("INV-OPEN", {"alice": 30_000}, capture=False)
    before = await m.snapshot()
    content = report_csv(
        [
            ("INV-X", 50_000, 500, 49_500, "2024-05-03"),  # unknown_invoice
            ("INV-1", 49_000, 490, 48_510, "2024-05-03"),  # amount_mismatch
            ("INV-1", 50_000, 400, 49_600, "2024-05-03"),  # duplicate_line (second line of INV-1)
            ("INV-OPEN", 30_000, 0, 30_000, "2024-05-03"),  # not_captured
            ("INV-2", "12.5", 0, "12.5", "2024-05-03"),  # invalid_line
            ("INV-3", 1_000, 0, 900, "2024-05-03"),  # net_mismatch
            ("", 1_000, 0, 1_000, "2024-05-03"),  # invalid_line (no invoice)
        ]
    )

    summary = await _import(m, content)

    assert summary.booked == 0 and summary.lines == 7
    assert summary.exceptions == {
        "amount_mismatch": 1,
        "duplicate_line": 1,
        "invalid_line": 2,
        "net_mismatch": 1,
        "not_captured": 1,
        "unknown_invoice": 1,
    }
    after = await m.snapshot()
    assert after["balances"] == before["balances"] and after["orders"] == before["orders"]
    assert after["counts"]["journal_entries"] == before["counts"]["journal_entries"]
    assert after["counts"]["settlement_lines"] == 7
    assert await m.exception_kinds() == [
        ("unknown_invoice", "INV-X"),
        ("amount_mismatch", "INV-1"),
        ("duplicate_line", "INV-1"),
        ("not_captured", "INV-OPEN"),
        ("invalid_line", "INV-2"),
        ("net_mismatch", "INV-3"),
        ("invalid_line", None),
    ]
    mismatch = await market_pool.fetchrow(
        "SELECT expected, actual, detail ->> 'report_id' AS report_id, (detail ->> 'line_no')::int AS line_no "
        "FROM reconciliation_exceptions WHERE platform_id = $1 AND kind = 'amount_mismatch'",
        m.pid,
    )
    assert tuple(mismatch) == (order.amount, 49_000, summary.report_id, 2)
    statuses = await market_pool.fetch("SELECT DISTINCT status FROM settlement_lines WHERE platform_id = $1", m.pid)
    assert [r["status"] for r in statuses] == ["exception"]


async def test_each_stored_line_keeps_its_exception_kind_and_the_report_reads_back_with_its_lines(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 50_000})
    summary = await _import(m, report_csv([line_for(order), ("INV-X", 1_000, 0, 1_000, "2024-05-03")]))

    report = await get_report(m.db, m.pid, summary.report_id)

    assert (report.report_id, report.source_name, report.line_count) == (summary.report_id, "report.csv", 2)
    assert report.summary["booked"] == 1 and report.summary["exceptions"] == {"unknown_invoice": 1}
    assert [(line.line_no, line.status, line.exception_kind) for line in report.lines] == [
        (1, "booked", None),
        (2, "exception", "unknown_invoice"),
    ]
    assert report.lines[0].entry_id == (await m.order("INV-1")).settlement_entry_id
    assert report.lines[1].detail is not None and report.lines[1].detail.startswith("unknown_invoice: ")

    other = await new_market(market_pool, "alice")
    with pytest.raises(errors.SettlementReportNotFound):
        await get_report(other.db, other.pid, summary.report_id)


async def test_on_finish_commits_with_the_final_summary_and_runs_again_for_a_re_import(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 50_000})
    content = report_csv([line_for(order)])
    seen: list[tuple[str, bool, object]] = []

    async def refuse(uow, summary) -> None:
        raise RuntimeError("the answer could not be stored")

    async def remember(uow, summary) -> None:
        stored = await uow.conn.fetchval(
            "SELECT summary ->> 'booked' FROM settlement_reports WHERE platform_id = $1 AND report_id = $2",
            m.pid,
            summary.report_id,
        )
        seen.append((summary.report_id, summary.already_imported, stored))

    with pytest.raises(RuntimeError):
        await _import(m, content, on_finish=refuse)
    state = await market_pool.fetchval(
        "SELECT summary ->> 'state' FROM settlement_reports WHERE platform_id = $1", m.pid
    )
    assert state == "importing"  # the summary rolled back with the answer; the line stayed booked
    assert (await m.order("INV-1")).settled_at is not None

    first = await _import(m, content, on_finish=remember)
    again = await _import(m, content, on_finish=remember)

    assert (first.booked, first.already_imported, again.already_imported) == (1, False, True)
    assert seen == [(first.report_id, False, "1"), (first.report_id, True, "1")]


async def test_fee_mismatch_is_an_exception(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 50_000}, fee_bps=100)
    summary = await _import(m, report_csv([("INV-1", 50_000, 600, 49_400, "2024-05-03")]))
    assert summary.exceptions == {"fee_mismatch": 1}
    assert (await m.order("INV-1")).settled_at is None
    assert await m.seller("alice") == {"pending": order.allocation.sellers[0].net, "available": 0, "debt": 0}


async def test_first_of_two_lines_for_one_invoice_books_and_the_second_is_a_duplicate(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 50_000})
    summary = await _import(m, report_csv([line_for(order), line_for(order)]))
    assert (summary.booked, summary.exceptions) == (1, {"duplicate_line": 1})
    assert await m.balance(chart.BANK) == 50_000


async def test_a_line_for_an_order_settled_by_an_earlier_report_is_a_duplicate(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 50_000})
    await _import(m, report_csv([line_for(order, "2024-05-03")]))
    before = await m.snapshot()

    later = await _import(m, report_csv([line_for(order, "2024-05-06")]))

    assert later.exceptions == {"duplicate_line": 1} and later.booked == 0
    after = await m.snapshot()
    assert after["balances"] == before["balances"] and after["orders"] == before["orders"]


async def test_refund_after_payout_is_debt_that_the_next_settlement_repays_first(market_pool):
    m = await new_market(market_pool, "alice")
    first = await m.add_order("INV-1", {"alice": 100_000})  # alice nets 90 000
    await _import(m, report_csv([line_for(first)]))
    await m.create_payout(payout_id="po-1", seller_id="alice", amount=90_000, mark_paid=True)

    await m.refund("INV-1", 50_000)  # alice's part: 45 000, and her money is gone
    assert await m.seller("alice") == {"pending": 0, "available": 0, "debt": 45_000}

    second = await m.add_order("INV-2", {"alice": 60_000})  # alice nets 54 000
    await _import(m, report_csv([line_for(second, "2024-05-07")]))

    assert await m.seller("alice") == {"pending": 0, "available": 54_000 - 45_000, "debt": 0}
    assert (await m.store.trial_balance(m.pid)).is_balanced


async def test_debt_is_repaid_across_orders_in_one_chunk_before_anything_is_available(market_pool):
    m = await new_market(market_pool, "alice")
    first = await m.add_order("INV-1", {"alice": 100_000})
    await _import(m, report_csv([line_for(first)]))
    await m.create_payout(payout_id="po-1", seller_id="alice", amount=90_000, mark_paid=True)
    await m.refund("INV-1", 100_000)  # alice owes 90 000
    orders = [await m.add_order(f"INV-{n}", {"alice": 50_000}) for n in range(2, 5)]  # 45 000 each

    await _import(m, report_csv([line_for(o, "2024-05-08") for o in orders]))

    assert await m.seller("alice") == {"pending": 0, "available": 3 * 45_000 - 90_000, "debt": 0}


async def test_refund_before_settlement_releases_only_what_is_left_and_leaves_clearing_to_doku(market_pool):
    m = await new_market(market_pool, "alice", "bob")
    order = await m.add_order("INV-1", {"alice": 60_000, "bob": 40_000}, fee_bps=100)  # fee 1 000
    refund = await m.refund("INV-1", 40_000)
    taken = refund.reversal.sellers

    summary = await _import(m, report_csv([line_for(order)]))

    assert summary.booked == 1
    assert await m.seller("alice") == {"pending": 0, "available": 54_000 - taken["alice"], "debt": 0}
    assert await m.seller("bob") == {"pending": 0, "available": 36_000 - taken["bob"], "debt": 0}
    assert await m.balance(chart.BANK) == 99_000
    assert await m.balance(chart.CLEARING) == -40_000  # DOKU nets the refund from a later settlement
    assert await m.balance(chart.FEES_WITHHELD) == 0


async def test_fee_doku_gave_back_on_a_refund_stays_owed_by_doku_instead_of_overdrawing_fees(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 100_000}, fee_bps=200, doku_refunds_fee=True)  # fee 2 000
    refund = await m.refund("INV-1", 100_000)
    assert refund.reversal.fee == 2_000

    summary = await _import(m, report_csv([line_for(order)]))

    assert summary.booked == 1 and summary.fee == 2_000
    assert await m.balance(chart.FEES_WITHHELD) == 0
    assert await m.balance(chart.BANK) == 98_000
    assert await m.balance(chart.CLEARING) == -(100_000 - 2_000)
    assert await m.seller("alice") == {"pending": 0, "available": 0, "debt": 0}
    assert (await m.store.trial_balance(m.pid)).is_balanced


async def test_a_report_is_processed_in_chunks_with_progress(market_pool):
    m = await new_market(market_pool, "alice", "bob")
    orders = [await m.add_order(f"INV-{n:02}", {"alice": 10_000 + n, "bob": 5_000}) for n in range(12)]
    lines = [line_for(o) for o in orders]
    lines.insert(6, line_for(orders[1]))  # a duplicate that lands in another chunk than its first line
    calls: list[tuple[int, int]] = []

    summary = await _import(m, report_csv(lines), chunk_size=5, progress=lambda *call: calls.append(call))

    assert calls == [(5, 13), (10, 13), (13, 13)]
    assert (summary.booked, summary.exceptions) == (12, {"duplicate_line": 1})
    assert await m.balance(chart.BANK) == sum(o.amount for o in orders)
    assert (await m.seller("alice"))["pending"] == 0


async def test_an_import_cut_short_resumes_without_booking_anything_twice(market_pool):
    m = await new_market(market_pool, "alice")
    orders = [await m.add_order(f"INV-{n}", {"alice": 10_000}) for n in range(6)]
    content = report_csv([line_for(o) for o in orders])

    def crash(done: int, total: int) -> None:
        raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        await _import(m, content, chunk_size=4, progress=crash)
    assert await m.balance(chart.BANK) == 40_000  # the first chunk committed

    summary = await _import(m, content, chunk_size=4)

    assert summary.already_imported is False and (summary.lines, summary.booked) == (6, 6)
    assert await m.balance(chart.BANK) == 60_000
    assert await market_pool.fetchval("SELECT count(*) FROM settlement_lines WHERE platform_id = $1", m.pid) == 6


async def test_concurrent_imports_of_one_report_book_each_line_once(market_pool):
    m = await new_market(market_pool, "alice")
    orders = [await m.add_order(f"INV-{n}", {"alice": 10_000}) for n in range(8)]
    content = report_csv([line_for(o) for o in orders])

    results = await asyncio.gather(*(_import(m, content, chunk_size=3) for _ in range(3)))

    assert all(r.booked == 8 for r in results)
    assert await m.balance(chart.BANK) == 80_000
    assert await market_pool.fetchval("SELECT count(*) FROM settlement_lines WHERE platform_id = $1", m.pid) == 8
    exceptions = "SELECT count(*) FROM reconciliation_exceptions WHERE platform_id = $1"
    assert await market_pool.fetchval(exceptions, m.pid) == 0


async def test_json_report_with_numbers_and_strings(market_pool):
    m = await new_market(market_pool, "alice")
    one = await m.add_order("INV-1", {"alice": 50_000}, fee_bps=100)
    two = await m.add_order("INV-2", {"alice": 1_250_000}, fee_bps=100)
    content = report_json(
        [
            ("INV-1", 50_000, 500, "49,500", "2024-05-03"),
            ("INV-2", "1,250,000.00", 12_500, 1_237_500, "2024-05-03"),
        ]
    )
    summary = await _import(m, content)
    assert summary.format == "json" and summary.booked == 2
    assert await m.balance(chart.BANK) == 49_500 + 1_237_500
    assert (one.amount, two.amount) == (50_000, 1_250_000)


async def test_the_sandbox_report_imports_with_the_default_mapping(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 75_000}, fee_bps=150, fee_fixed=1_000)
    fee = order.allocation.fee
    row = SettlementRow(
        invoice_number="INV-1",
        request_id="req-INV-1",
        client_id="MCH-1",
        transaction_date="2024-05-02T10:15:00+07:00",
        status="SUCCESS",
        gross_amount=75_000,
        fee=fee,
        net_amount=75_000 - fee,
        settlement_date=date(2024, 5, 6),
        extra=(("ledger_ref", "x"),),
    )
    summary = await _import(m, render_csv([row]).encode())
    assert (summary.booked, summary.net) == (1, 75_000 - fee)
    line = await market_pool.fetchrow("SELECT settled_on, status FROM settlement_lines WHERE platform_id = $1", m.pid)
    assert tuple(line) == (date(2024, 5, 6), "booked")


async def test_a_custom_mapping_reads_another_layout(market_pool):
    m = await new_market(market_pool, "alice")
    await m.add_order("INV-1", {"alice": 50_000})
    content = (
        b"Type;Invoice;Amount;MDR;Settled;Date\n"
        b"SALE;INV-1;50.000;0;50.000,00;03/05/2024\n"
        b"REFUND;INV-1;-10.000;0;-10.000;03/05/2024\n"
    )
    mapping = mapping_from_spec(
        {
            "invoice_number": "Invoice",
            "gross": "Amount",
            "fee": "MDR",
            "net": "Settled",
            "settled_on": "Date",
            "type": "Type",
            "payment_types": ["SALE"],
            "number_format": "1.234,00",
            "date_format": "%d/%m/%Y",
            "delimiter": ";",
        }
    )
    summary = await _import(m, content, mapping=mapping)
    # The REFUND row is read as a refund line; no gateway refund of INV-1 awaits DOKU's deduction.
    assert (summary.booked, summary.skipped, summary.net) == (1, 0, 50_000)
    assert summary.exceptions == {"unmatched_refund": 1}
    assert (summary.by_type["payment"].booked, summary.by_type["refund"].lines) == (1, 1)


async def test_a_report_without_a_mapped_column_is_invalid_and_leaves_no_trace(market_pool):
    m = await new_market(market_pool, "alice")
    await m.add_order("INV-1", {"alice": 50_000})
    before = await m.snapshot()
    with pytest.raises(errors.SettlementReportInvalid) as raised:
        await _import(m, b"invoice_number,gross_amount,net_amount,settlement_date\nINV-1,50000,50000,2024-05-03\n")
    assert raised.value.code == "settlement_report_invalid"
    assert raised.value.context["missing"] == ["fee"]
    assert await m.snapshot() == before


@pytest.mark.soak
async def test_a_100k_line_report_imports_in_chunks(market_pool):
    """Opt in with ``-m soak``: 100 000 captured orders, one report, every line booked."""
    m = await new_market(market_pool, "alice", "bob")
    template = await m.add_order("TEMPLATE", {"alice": 60_000, "bob": 40_000}, fee_bps=150, capture=False)
    n = 100_000
    await market_pool.execute(
        """
        INSERT INTO orders (platform_id, invoice_number, amount, status, request, policy, allocation, doku_request_id)
        SELECT $1, 'INV-' || lpad(i::text, 6, '0'), $2, 'created', '{}'::jsonb, o.policy, o.allocation, 'req-' || i
          FROM generate_series(1, $3) AS i, orders o
         WHERE o.platform_id = $1 AND o.invoice_number = 'TEMPLATE'
        """,
        m.pid,
        template.amount,
        n,
    )
    invoices = [f"INV-{i:06}" for i in range(1, n + 1)]
    for start in range(0, n, 2_000):
        batch = [CaptureRequest(invoice_number=inv, amount=template.amount) for inv in invoices[start : start + 2_000]]
        await m.db.transaction(lambda uow, b=batch: capture_batch(uow, m.pid, b))
    fee = template.allocation.fee
    content = report_csv([(inv, template.amount, fee, template.amount - fee, "2024-05-03") for inv in invoices])

    started = time.perf_counter()
    summary = await _import(m, content)
    elapsed = time.perf_counter() - started

    print(f"\nimported {n} lines in {elapsed:.1f} s ({n / elapsed:,.0f} lines/s)")
    assert (summary.lines, summary.booked) == (n, n)
    assert await m.balance(chart.BANK) == n * (template.amount - fee)
    assert await m.balance(chart.CLEARING) == 0
    assert (await m.seller("alice"))["pending"] == 0
