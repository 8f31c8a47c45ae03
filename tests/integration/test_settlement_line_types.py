"""Every line kind of DOKU's report booked on real PostgreSQL: refunds DOKU deducts (by Request-Id or
by amount), chargebacks, adjustments (and their write-off), fee corrections; a line of a type the
mapping does not know is an exception, never skipped; the books close to zero."""

from __future__ import annotations

import csv
import io

import asyncpg
import pytest

from ledger import chart
from ledger.service import exceptions
from ledger.service.reconciliation import reconcile
from ledger.service.settlement import get_report, import_settlement_report
from ledger.settlement_report import mapping_from_spec
from ledger.store.driver import constraint_name
from tests.integration.marketplace_fixtures import (  # noqa: F401 (market_pool is a fixture)
    Market,
    market_pool,
    new_market,
    plain,
)

Row = tuple[str, str | None, object, object, object, str | None]  # type, invoice, gross, fee, net, request_id


def typed_csv(rows: list[Row], batch: str = "1") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["type", "invoice_number", "gross_amount", "fee", "net_amount", "settlement_date", "request_id", "b"]
    )
    for kind, invoice, gross, fee, net, reference in rows:
        writer.writerow([kind, invoice or "", gross, fee, net, "2024-05-06", reference or "", batch])
    return out.getvalue().encode()


async def _import(m: Market, content: bytes, **kwargs):
    return await import_settlement_report(m.db, m.pid, source_name="r.csv", content=content, **kwargs)


def payment(order) -> Row:
    a = order.allocation
    return ("PAYMENT", order.invoice_number, a.gross, a.fee, a.gross - a.fee, None)


async def clearing_accounts(m: Market) -> dict[str, int]:
    return {code: await m.balance(code) for code in chart.CLEARING_ACCOUNTS}


async def test_a_refund_row_deducts_the_gateway_refund_and_the_books_close(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 100_000}, fee_bps=150)  # fee 1 500
    refund = await m.refund("INV-1", 30_000)
    assert await m.balance(chart.CLEARING) == 70_000

    summary = await _import(m, typed_csv([payment(order), ("REFUND", "INV-1", -30_000, 0, -30_000, refund.refund_id)]))

    assert (summary.lines, summary.booked, summary.exceptions) == (2, 2, {})
    assert (summary.gross, summary.fee, summary.net) == (70_000, 1_500, 98_500 - 30_000)
    assert summary.by_type["refund"].net == -30_000
    assert await clearing_accounts(m) == dict.fromkeys(chart.CLEARING_ACCOUNTS, 0)
    assert await m.balance(chart.BANK) == 98_500 - 30_000
    (done,) = await m.db.read(lambda uow: uow.refunds.of_order(m.pid, "INV-1"))
    assert done.cleared_by == f"report {summary.report_id} line 2" and done.clearing_entry_id is not None
    entry = await m.store.get_entry(m.pid, done.clearing_entry_id)
    assert entry.kind == "refund_deduction" and {p.account: p.amount for p in entry.postings} == {
        chart.CLEARING: 30_000,
        chart.BANK: -30_000,
    }
    stored = await get_report(m.db, m.pid, summary.report_id)
    assert [(line.line_type, line.refund_id, line.status) for line in stored.lines] == [
        ("payment", None, "booked"),
        ("refund", refund.refund_id, "booked"),
    ]
    rec = await reconcile(m.db, m.pid, period_start=stored.imported_at.date(), period_end=stored.imported_at.date())
    assert rec.unexplained.total == 0 and rec.open_items.count == 0 and rec.clean is True


async def test_refund_rows_without_a_request_id_take_the_oldest_refund_of_that_amount_once(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 100_000})
    first = await m.refund("INV-1", 10_000)
    second = await m.refund("INV-1", 10_000)
    rows = [("REFUND", "INV-1", "10,000", 0, "10,000", None)] * 3  # written as positive amounts: still deductions

    summary = await _import(m, typed_csv([payment(order), *rows]))

    assert (summary.booked, summary.exceptions) == (3, {"duplicate_line": 1})
    assert summary.net == 100_000 - 20_000
    refunds = await m.db.read(lambda uow: uow.refunds.of_order(m.pid, "INV-1"))
    assert [(r.refund_id, r.cleared_by) for r in refunds] == [
        (first.refund_id, f"report {summary.report_id} line 2"),
        (second.refund_id, f"report {summary.report_id} line 3"),
    ]
    assert await m.balance(chart.CLEARING) == 0


async def test_refund_rows_that_match_no_refund_awaiting_deduction_are_exceptions_and_move_nothing(market_pool):
    m = await new_market(market_pool, "alice")
    await m.add_order("INV-1", {"alice": 100_000})
    manual = await m.refund("INV-1", 5_000, mode="manual")
    gateway = await m.refund("INV-1", 7_000)
    before = await m.snapshot()
    rows: list[Row] = [
        ("REFUND", "INV-1", -5_000, 0, -5_000, manual.refund_id),  # a manual refund: DOKU never paid it
        ("REFUND", "INV-1", -6_000, 0, -6_000, gateway.refund_id),  # the wrong amount
        ("REFUND", "INV-1", -9_999, 0, -9_999, None),  # no refund of that amount
        ("REFUND", "INV-1", -7_000, 0, -7_000, "rf-nope"),  # no such refund
        ("REFUND", "INV-GHOST", -7_000, 0, -7_000, None),
        ("REFUND", "INV-1", -7_000, 500, -7_500, None),  # one sign for a deduction's amounts
    ]

    summary = await _import(m, typed_csv(rows))

    assert summary.booked == 0
    assert summary.exceptions == {"amount_mismatch": 1, "invalid_line": 1, "unknown_invoice": 1, "unmatched_refund": 3}
    after = await m.snapshot()
    assert (after["balances"], after["counts"]["journal_entries"]) == (
        before["balances"],
        before["counts"]["journal_entries"],
    )


async def test_a_refund_line_that_came_too_early_is_booked_when_the_report_is_imported_again(market_pool):
    m = await new_market(market_pool, "alice")
    await m.add_order("INV-1", {"alice": 100_000})
    content = typed_csv([("REFUND", "INV-1", -8_000, 0, -8_000, None)])
    first = await _import(m, content)
    assert first.exceptions == {"unmatched_refund": 1}

    await m.refund("INV-1", 8_000)  # the refund DOKU had already deducted is now in the books
    again = await _import(m, content)

    assert (again.already_imported, again.reevaluated, again.rebooked, again.booked) == (True, 1, 1, 1)
    assert again.exceptions == {}
    assert await exceptions.list_exceptions(m.db, m.pid) == []
    assert await m.balance(chart.CLEARING) == 100_000  # the order itself is still to be settled
    third = await _import(m, content)  # nothing open any more: the first answer, nothing done
    assert (third.already_imported, third.booked, third.reevaluated) == (True, 1, 0)


async def test_a_chargeback_refunds_the_order_out_of_the_settlement(market_pool):
    m = await new_market(market_pool, "alice", "bob")
    order = await m.add_order("INV-1", {"alice": 60_000, "bob": 40_000})  # 10 % commission
    await _import(m, typed_csv([payment(order)], batch="settle"))
    assert await m.seller("alice") == {"pending": 0, "available": 54_000, "debt": 0}

    summary = await _import(m, typed_csv([("CHARGEBACK", "INV-1", -50_000, 0, -50_000, None)], batch="cb"))

    assert (summary.booked, summary.exceptions, summary.net) == (1, {}, -50_000)
    (refund,) = await m.db.read(lambda uow: uow.refunds.of_order(m.pid, "INV-1"))
    assert (refund.mode, refund.status, refund.amount) == ("chargeback", "succeeded", 50_000)
    assert refund.reversal is not None and refund.reversal.sellers == {"alice": 27_000, "bob": 18_000}
    assert refund.cleared_at is not None
    assert await m.seller("alice") == {"pending": 0, "available": 27_000, "debt": 0}
    assert await clearing_accounts(m) == dict.fromkeys(chart.CLEARING_ACCOUNTS, 0)
    assert await m.balance(chart.BANK) == 100_000 - 50_000
    assert (await m.order("INV-1")).refunded_amount == 50_000
    too_much = await _import(m, typed_csv([("CHARGEBACK", "INV-1", -60_000, 0, -60_000, None)], batch="cb2"))
    assert (too_much.booked, too_much.exceptions) == (0, {"reversal_rejected": 1})


async def test_an_adjustment_waits_in_suspense_until_written_off_and_the_reconciliation_says_so(market_pool):
    m = await new_market(market_pool, "alice")
    summary = await _import(m, typed_csv([("ADJUSTMENT", None, "", "", -2_500, None)]))
    assert (summary.booked, summary.exceptions, summary.net) == (1, {}, -2_500)
    assert (await m.balance(chart.BANK), await m.balance(chart.SUSPENSE)) == (-2_500, -2_500)
    (found,) = await exceptions.list_exceptions(m.db, m.pid)
    assert (found.kind, found.actual, found.detail["report_id"]) == ("adjustment", -2_500, summary.report_id)
    day = (await get_report(m.db, m.pid, summary.report_id)).imported_at.date()
    rec = await reconcile(m.db, m.pid, period_start=day, period_end=day)
    assert rec.clean is False and "unexplained_money" in [i.code for i in rec.issues]
    assert rec.unexplained.by_account == {chart.SUSPENSE: -2_500}
    assert [(u.invoice_number, u.account, u.amount, u.reason) for u in rec.unexplained.by_order] == [
        (None, chart.SUSPENSE, -2_500, "suspense")
    ]

    await exceptions.resolve_exception(
        m.db, plain(m.db, m.pid), m.pid, found.exception_id, "DOKU's admin fee", "write_off"
    )

    assert (await m.balance(chart.SUSPENSE), await m.balance(chart.COMMISSION)) == (0, -2_500)
    rec = await reconcile(m.db, m.pid, period_start=day, period_end=day)
    assert rec.clean is True and rec.unexplained.total == 0


async def test_a_fee_correction_goes_to_the_platforms_commission(market_pool):
    m = await new_market(market_pool, "alice")
    summary = await _import(m, typed_csv([("FEE_CORRECTION", None, "", "", 1_200, None)]))
    assert (summary.booked, summary.gross, summary.fee, summary.net) == (1, 0, -1_200, 1_200)
    assert (await m.balance(chart.BANK), await m.balance(chart.COMMISSION)) == (1_200, 1_200)
    ghost = await _import(m, typed_csv([("FEE_CORRECTION", "INV-GHOST", "", "", 100, None)], batch="2"))
    assert (ghost.booked, ghost.exceptions) == (0, {"unknown_invoice": 1})


async def test_a_row_of_a_type_the_mapping_does_not_know_is_an_exception_never_skipped(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 10_000})
    summary = await _import(m, typed_csv([payment(order), ("TOTAL", None, 10_000, 0, 10_000, None)]))
    assert (summary.lines, summary.booked, summary.skipped, summary.exceptions) == (2, 1, 0, {"unknown_line_type": 1})
    assert summary.by_type["unknown"].lines == 1
    (found,) = await exceptions.list_exceptions(m.db, m.pid)
    assert found.kind == "unknown_line_type" and "TOTAL" in found.detail["message"]

    # The mapping knows it once told: a platform's own type names.
    mapping = mapping_from_spec("refund_types=RETUR|REFUND,adjustment_types=TOTAL")
    assert mapping.kind_of(" retur ") == "refund" and mapping.kind_of("total") == "adjustment"


async def test_a_refund_is_deducted_once_even_behind_the_codes_back(market_pool):
    m = await new_market(market_pool, "alice")
    await m.add_order("INV-1", {"alice": 10_000})
    refund = await m.refund("INV-1", 1_000)
    summary = await _import(m, typed_csv([("REFUND", "INV-1", -1_000, 0, -1_000, refund.refund_id)]))
    (line,) = (await get_report(m.db, m.pid, summary.report_id)).lines
    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await m.pool.execute(
            """
            INSERT INTO settlement_lines (platform_id, report_id, line_no, invoice_number, gross, fee, net, status,
                                          entry_id, line_type, refund_id)
            VALUES ($1, $2, 99, 'INV-1', -1000, 0, -1000, 'booked', $3, 'refund', $4)
            """,
            m.pid,
            summary.report_id,
            line.entry_id,
            refund.refund_id,
        )
    assert constraint_name(raised.value) == "settlement_lines_refund_booked_once"
    with pytest.raises(asyncpg.CheckViolationError) as raised_check:
        await m.pool.execute(
            """
            INSERT INTO settlement_lines (platform_id, report_id, line_no, invoice_number, gross, fee, net, status,
                                          entry_id, line_type)
            VALUES ($1, $2, 98, 'INV-1', 1000, 0, 1000, 'booked', $3, 'refund')
            """,
            m.pid,
            summary.report_id,
            line.entry_id,
        )
    assert constraint_name(raised_check.value) == "settlement_lines_booked_line_complete"


async def test_a_refund_is_cleared_with_what_cleared_it_or_not_at_all(market_pool):
    m = await new_market(market_pool, "alice")
    await m.add_order("INV-1", {"alice": 10_000})
    gateway = await m.refund("INV-1", 1_000)
    manual = await m.refund("INV-1", 1_000, mode="manual")
    assert (manual.cleared_at is not None, manual.cleared_by) == (True, "bank")  # the bank paid it at once
    for sql, args, constraint in (
        ("UPDATE refunds SET cleared_at = now() WHERE platform_id = $1 AND refund_id = $2", (gateway.refund_id,),
         "refunds_cleared_complete"),
        ("UPDATE refunds SET clearing_entry_id = entry_id WHERE platform_id = $1 AND refund_id = $2",
         (manual.refund_id,), "refunds_clearing_entry_matches_mode"),
        ("UPDATE refunds SET mode = 'cash' WHERE platform_id = $1 AND refund_id = $2", (manual.refund_id,),
         "refunds_mode_valid"),
    ):  # fmt: skip
        with pytest.raises(asyncpg.CheckViolationError) as raised:
            await m.pool.execute(sql, m.pid, *args)
        assert constraint_name(raised.value) == constraint
