"""The pure settlement, reconciliation and statement rules, without a database: which line books,
how a chunk repays debt, what the summary counts, what is overdue, how a statement runs."""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import chart, errors, settlement, split
from ledger.balances import SellerPosting, account_names, seller_codes, seller_statement_from, statement_scope
from ledger.model import Posted, Rejected
from ledger.orders import Order, OrderPolicy
from ledger.reconciliation import (
    SellerFigures,
    UnsettledOrder,
    owed_by_doku,
    owed_to_sellers,
    seller_balances_by_code,
)
from ledger.settlement import LineTally
from ledger.settlement_report import ReportLine

T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)


def order(invoice: str, items: dict[str, int], *, fee_bps: int = 0, **changes: object) -> Order:
    policy = OrderPolicy(split=split.CartPolicy(commission_bps=1_000), fee=split.FeePolicy(bps=fee_bps))
    line_items = [split.LineItem(name=f"item-{s}", price=p, quantity=1, seller_id=s) for s, p in items.items()]
    allocation = split.allocate(sum(items.values()), line_items, policy.split, policy.fee)
    made = Order(
        invoice_number=invoice, amount=allocation.gross, status="captured", request={}, policy=policy,
        allocation=allocation, reversed=None, refunded_amount=0, refund_reserved=0, doku_request_id=f"req-{invoice}",
        doku_error=None, capture_entry_id=1, captured_at=T0, settled_at=None, settlement_entry_id=None,
        closed_reason=None, created_at=T0, updated_at=T0,
    )  # fmt: skip
    return msgspec.structs.replace(made, **changes)


def line_for(o: Order, line_no: int = 1, **changes: object) -> ReportLine:
    a = o.allocation
    line = ReportLine(
        line_no=line_no, invoice_number=o.invoice_number, gross=a.gross, fee=a.fee, net=a.gross - a.fee,
        settled_on=date(2024, 5, 3),
    )  # fmt: skip
    return msgspec.structs.replace(line, **changes)


def moved(draft: object, code: str) -> int:
    return sum(p.amount for p in draft.postings if p.account == code)  # type: ignore[attr-defined]


# -- matching ------------------------------------------------------------------------------------


def test_each_check_names_its_own_exception_kind():
    o = order("INV-1", {"alice": 50_000}, fee_bps=100)
    assert settlement.check_line(line_for(o), o) is None
    assert settlement.check_line(line_for(o), None).kind == settlement.UNKNOWN_INVOICE
    assert settlement.check_line(line_for(o), msgspec.structs.replace(o, status="pending")).kind == "not_captured"
    assert settlement.check_line(line_for(o, gross=49_000, net=48_500), o).kind == "amount_mismatch"
    assert settlement.check_line(line_for(o, fee=600, net=49_400), o).kind == "fee_mismatch"
    settled = msgspec.structs.replace(o, settled_at=T0, settlement_entry_id=9)
    assert settlement.check_line(line_for(o), settled).kind == settlement.DUPLICATE_LINE


def test_a_second_line_for_an_invoice_and_an_order_settled_elsewhere_are_duplicates():
    one, two = order("INV-1", {"alice": 10_000}), order("INV-2", {"alice": 20_000})
    lines = [line_for(one, 1), line_for(two, 2), line_for(one, 3)]
    first = settlement.first_lines(lines)
    assert first == {"INV-1": 1, "INV-2": 2}

    outcomes, readable = settlement.triage(lines, first)
    assert [line.line_no for line in readable] == [1, 2] and outcomes[3].kind == settlement.DUPLICATE_LINE

    settled_two = msgspec.structs.replace(two, settled_at=T0, settlement_entry_id=7)
    mismatched, to_book = settlement.match_orders(
        readable, {"INV-1": one, "INV-2": settled_two}, {"INV-2": ("sr-earlier", 4)}
    )
    assert [(line.line_no, o.invoice_number) for line, o in to_book] == [(1, "INV-1")]
    assert mismatched[2].kind == settlement.DUPLICATE_LINE and "sr-earlier line 4" in mismatched[2].detail


# -- the entries -----------------------------------------------------------------------------------


@given(
    debt=st.integers(0, 200_000),
    prices=st.lists(st.integers(1_000, 100_000), min_size=1, max_size=5),
)
def test_a_chunk_repays_debt_first_and_leaves_the_debts_it_was_given_unchanged(debt, prices):
    orders = [order(f"INV-{n}", {"alice": price}) for n, price in enumerate(prices)]
    debts = {"alice": debt}
    drafts = settlement.settlement_drafts([(line_for(o), o) for o in orders], debts, "sr-1")

    assert debts == {"alice": debt}
    released = sum(s.net for o in orders for s in o.allocation.sellers)
    repaid = -sum(moved(d, chart.seller_debt("alice")) for d in drafts)
    to_available = -sum(moved(d, chart.seller_available("alice")) for d in drafts)
    assert repaid == min(debt, released) and repaid + to_available == released
    assert all(sum(p.amount for p in d.postings) == 0 for d in drafts)


def test_one_draft_returns_the_debt_it_left():
    o = order("INV-1", {"alice": 100_000})  # alice nets 90 000
    draft, left = settlement.settlement_draft(line_for(o), o, {"alice": 30_000}, "sr-1")
    assert left == {"alice": 0}
    assert moved(draft, chart.seller_available("alice")) == -60_000
    assert draft.idempotency_key == "settlement:INV-1" and draft.metadata["report_id"] == "sr-1"


def test_a_refused_posting_becomes_an_exception_of_its_line():
    one, two = order("INV-1", {"alice": 10_000}), order("INV-2", {"alice": 20_000})
    to_book = [(line_for(one, 1), one), (line_for(two, 2), two)]
    entry_ids, outcomes = settlement.posting_outcomes(
        to_book, [Posted(entry_id=11), Rejected(code="insufficient_funds", detail="no")]
    )
    assert entry_ids == {1: 11} and outcomes[2].kind == settlement.POSTING_REJECTED

    rows = settlement.line_rows([line_for(one, 1), line_for(two, 2)], outcomes, entry_ids)
    assert [(r.status, r.entry_id, r.exception_kind) for r in rows] == [
        ("booked", 11, None),
        ("exception", None, "posting_rejected"),
    ]
    assert rows[1].detail is not None and rows[1].detail.startswith("posting_rejected: ")


# -- the summary -----------------------------------------------------------------------------------


def test_the_summary_totals_booked_lines_and_counts_exceptions_by_kind():
    tallies = [
        LineTally(status="booked", exception_kind=None, lines=2, gross=30_000, fee=300, net=29_700),
        LineTally(status="exception", exception_kind="unknown_invoice", lines=1, gross=5_000, fee=0, net=5_000),
        LineTally(status="exception", exception_kind="amount_mismatch", lines=3, gross=1, fee=0, net=1),
    ]
    summary = settlement.summarize("sr-1", "r.csv", "csv", 4, tallies)
    assert (summary.lines, summary.booked, summary.skipped) == (6, 2, 4)
    assert (summary.gross, summary.fee, summary.net) == (30_000, 300, 29_700)
    assert list(summary.exceptions.items()) == [("amount_mismatch", 3), ("unknown_invoice", 1)]
    assert summary.exception_count == 4 and summary.already_imported is False


def test_a_stored_summary_is_a_re_import_and_the_importing_state_is_not():
    assert settlement.finished_summary(settlement.IMPORTING) is None
    summary = settlement.summarize("sr-1", "r.csv", "json", 0, [])
    again = settlement.finished_summary(msgspec.to_builtins(summary))
    assert again == msgspec.structs.replace(summary, already_imported=True)


def test_the_report_id_is_the_content_hash():
    assert settlement.report_id_for(b"a")[0] == settlement.report_id_for(b"a")[0] != settlement.report_id_for(b"b")[0]


# -- reconciliation --------------------------------------------------------------------------------


def test_an_order_is_overdue_after_t_plus_two_working_days_counted_from_its_wib_day():
    sunday_utc_monday_wib = datetime(2024, 5, 5, 17, 30, tzinfo=UTC)  # Monday 2024-05-06 00:30 WIB
    orders = [UnsettledOrder(invoice_number="INV-1", amount=10_000, captured_at=sunday_utc_monday_wib)]

    due_day = owed_by_doku(orders, today=date(2024, 5, 8), settlement_days=2, clearing_balance=10_000)
    late = owed_by_doku(orders, today=date(2024, 5, 9), settlement_days=2, clearing_balance=10_000)

    assert (due_day.unsettled.count, due_day.overdue.count) == (1, 0)
    (o,) = late.overdue_orders
    assert (o.due_on, o.working_days_late, o.age_working_days) == (date(2024, 5, 8), 1, 3)
    assert late.overdue.amount == 10_000 and late.clearing_balance == 10_000


def test_sellers_whose_ledger_and_tables_disagree_are_named():
    figures = SellerFigures(
        allocated={"alice": 90_000, "bob": 45_000},
        reversed={"alice": 9_000},
        paid={"alice": 50_000},
        in_transit={"bob": 20_000},
        balances=seller_balances_by_code(
            {"seller:alice:pending": 0, "seller:alice:available": 31_000, "seller:alice:debt": 0,
             "seller:bob:pending": 0, "seller:bob:available": 5_000, "seller:bob:debt": 0}
        ),
    )  # fmt: skip
    owed = owed_to_sellers(figures)
    assert (owed.expected, owed.ledger, owed.difference) == (76_000, 56_000, -20_000)
    assert [(d.seller_id, d.difference) for d in owed.sellers] == [("bob", -20_000)]


# -- statements ------------------------------------------------------------------------------------


def posting(posting_id: int, account_id: int, amount: int, balance_after: int, kind: str) -> SellerPosting:
    return SellerPosting(
        posting_id=posting_id, entry_id=posting_id, account_id=account_id, amount=amount,
        balance_after=balance_after, created_at=T0, kind=kind, effective_at=T0, metadata={"invoice_number": "INV-1"},
    )  # fmt: skip


def test_the_all_statement_runs_payable_from_the_balances_before_the_page():
    names = account_names("alice", dict(zip((1, 2, 3), seller_codes("alice"), strict=True)))
    page = [posting(10, 2, -5_000, 25_000, "settlement"), posting(11, 3, 7_000, 7_000, "refund")]

    statement = seller_statement_from(
        "alice", "all", page, limit=1, names=names, balances_before={1: 0, 2: 20_000, 3: 0}
    )

    assert [(line.account, line.change, line.balance) for line in statement.lines] == [("available", 5_000, 25_000)]
    assert statement.next_cursor == 10


def test_a_seller_without_all_three_accounts_is_not_found_and_a_bad_scope_is_refused():
    with pytest.raises(errors.SellerNotFound):
        account_names("alice", {1: chart.seller_pending("alice")})
    with pytest.raises(ValueError):
        statement_scope("everything")
    assert statement_scope("debt") == ("debt",)
