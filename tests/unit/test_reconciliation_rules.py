"""The reconciliation's truth (pure): which open items explain the money in the clearing, suspense
and fee accounts, what is left unexplained (by account and by order), and how old the items are."""

from __future__ import annotations

from datetime import UTC, date, datetime

from ledger import chart
from ledger.reconciliation import (
    AGING_BUCKETS,
    UnclearedRefund,
    UnsettledOrder,
    aging,
    explained_by,
    open_items,
    positions,
    summarize_items,
    unexplained,
)

MONDAY = datetime(2024, 5, 6, 3, 0, tzinfo=UTC)  # 10:00 WIB
ORDER = UnsettledOrder(invoice_number="INV-1", amount=100_000, captured_at=MONDAY, fee=1_500, fee_returned=200)
GATEWAY = UnclearedRefund(
    refund_id="rf-1", invoice_number="INV-2", mode="gateway", amount=30_000, fee_returned=300, completed_at=MONDAY
)
DEPOSIT = UnclearedRefund(
    refund_id="rf-2", invoice_number="INV-3", mode="deposit", amount=20_000, fee_returned=0, completed_at=MONDAY
)


def items_on(today: date):
    return open_items([ORDER], [GATEWAY, DEPOSIT], today=today, settlement_days=2)


def test_each_open_item_explains_its_money_in_its_accounts():
    awaiting, refund, deposit = items_on(date(2024, 5, 8))
    assert (awaiting.kind, awaiting.accounts, awaiting.due_on, awaiting.overdue) == (
        "awaiting_settlement",
        {chart.CLEARING: 99_800, chart.FEES_WITHHELD: 1_300},
        date(2024, 5, 8),
        False,
    )
    assert (refund.kind, refund.refund_id, refund.accounts) == (
        "refund_awaiting_deduction",
        "rf-1",
        {chart.CLEARING: -29_700},
    )
    assert (deposit.kind, deposit.accounts) == ("deposit_refund_in_flight", {chart.DEPOSIT_IN_FLIGHT: 20_000})
    assert explained_by([awaiting, refund, deposit]) == {
        chart.CLEARING: 99_800 - 29_700,
        chart.SUSPENSE: 0,
        chart.FEES_WITHHELD: 1_300,
        chart.DEPOSIT_IN_FLIGHT: 20_000,
    }


def test_a_manual_refund_is_no_open_item():
    manual = UnclearedRefund(
        refund_id="rf-9", invoice_number="INV-9", mode="manual", amount=1, fee_returned=0, completed_at=MONDAY
    )
    assert open_items([], [manual], today=date(2024, 5, 6), settlement_days=2) == []


def test_an_order_past_t_plus_two_explains_nothing_and_is_listed_as_overdue():
    items = items_on(date(2024, 5, 9))
    balances = {chart.CLEARING: 99_800 - 29_700, chart.FEES_WITHHELD: 1_300, chart.DEPOSIT_IN_FLIGHT: 20_000}
    accounts = positions(balances, items)
    assert {p.account: p.unexplained for p in accounts} == {
        chart.CLEARING: 99_800,
        chart.SUSPENSE: 0,
        chart.FEES_WITHHELD: 1_300,
        chart.DEPOSIT_IN_FLIGHT: 0,
    }
    found = unexplained(accounts, items, by_order={"INV-1": {chart.CLEARING: 99_800, chart.FEES_WITHHELD: 1_300},
                                                    "INV-2": {chart.CLEARING: -29_700},
                                                    "INV-3": {chart.DEPOSIT_IN_FLIGHT: 20_000}})  # fmt: skip
    assert found.total == 99_800 + 1_300
    assert [(u.invoice_number, u.account, u.amount, u.reason) for u in found.by_order] == [
        ("INV-1", chart.CLEARING, 99_800, "settlement_overdue"),
        ("INV-1", chart.FEES_WITHHELD, 1_300, "settlement_overdue"),
    ]


def test_money_no_item_accounts_for_is_unexplained_by_order_and_by_account():
    items = items_on(date(2024, 5, 7))
    # INV-2's deduction came with 1 rupiah too few, and an adjustment sits in suspense.
    balances = {chart.CLEARING: 99_800 - 29_700 + 1, chart.FEES_WITHHELD: 1_300, chart.DEPOSIT_IN_FLIGHT: 20_000,
                chart.SUSPENSE: -2_500}  # fmt: skip
    by_order = {
        "INV-1": {chart.CLEARING: 99_800, chart.FEES_WITHHELD: 1_300},
        "INV-2": {chart.CLEARING: -29_699},
        "INV-3": {chart.DEPOSIT_IN_FLIGHT: 20_000},
        "": {chart.SUSPENSE: -2_500},
    }
    found = unexplained(positions(balances, items), items, by_order)
    assert found.by_account == {chart.CLEARING: 1, chart.SUSPENSE: -2_500}
    assert found.total == 2_501
    assert [(u.invoice_number, u.account, u.amount, u.reason) for u in found.by_order] == [
        (None, chart.SUSPENSE, -2_500, "suspense"),
        ("INV-2", chart.CLEARING, 1, "not_explained"),
    ]
    # Nothing to say when every rupiah is explained: the per-order breakdown is not even needed.
    assert unexplained(positions(explained_by(items), items), items, None).total == 0


def test_aging_buckets_count_every_item_once_by_working_days():
    items = open_items(
        [ORDER, UnsettledOrder(invoice_number="INV-OLD", amount=7, captured_at=datetime(2024, 4, 1, tzinfo=UTC))],
        [GATEWAY],
        today=date(2024, 5, 13),
        settlement_days=2,
    )
    buckets = aging(items)
    assert [b.bucket for b in buckets] == [name for name, _, _ in AGING_BUCKETS] == ["0-2", "3-5", "6-10", "11+"]
    assert [(b.count, b.amount) for b in buckets] == [(0, 0), (2, 130_000), (0, 0), (1, 7)]
    summary = summarize_items(items)
    assert (summary.count, summary.amount) == (3, 130_007)
    assert {k: (t.count, t.amount) for k, t in summary.by_kind.items()} == {
        "awaiting_settlement": (2, 100_007),
        "refund_awaiting_deduction": (1, 30_000),
    }
    assert [i.invoice_number for i in summary.items] == ["INV-OLD", "INV-1", "INV-2"]  # oldest first
