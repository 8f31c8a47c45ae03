"""Payouts on real PostgreSQL: never beyond available - debt, paid or failed exactly once."""

from __future__ import annotations

import asyncio

import pytest

from ledger import chart, errors
from ledger.service.settlement import import_settlement_report
from tests.integration.marketplace_fixtures import (  # noqa: F401 (market_pool is a fixture)
    Market,
    line_for,
    market_pool,
    new_market,
    report_csv,
)


async def settled_market(pool, *, amount: int = 100_000) -> Market:
    """alice with ``amount * 0.9`` available (10 % commission, no fee)."""
    m = await new_market(pool, "alice")
    order = await m.add_order("INV-1", {"alice": amount})
    await import_settlement_report(m.db, m.pid, source_name="r.csv", content=report_csv([line_for(order)]))
    return m


async def pay(m: Market, payout_id: str, amount: int, **kwargs):
    return await m.create_payout(payout_id=payout_id, seller_id="alice", amount=amount, **kwargs)


async def test_a_payout_moves_available_to_in_transit_and_confirming_pays_it_from_the_bank(market_pool):
    m = await settled_market(market_pool)
    bank = await m.balance(chart.BANK)

    payout = await pay(m, "po-1", 60_000, reference="batch-7")

    assert (payout.status, payout.amount, payout.reference) == ("pending", 60_000, "batch-7")
    assert payout.completion_entry_id is None
    assert await m.seller("alice") == {"pending": 0, "available": 30_000, "debt": 0}
    assert await m.balance(chart.PAYOUTS_IN_TRANSIT) == 60_000

    paid = await m.confirm_payout("po-1", reference="bank-123")

    assert (paid.status, paid.reference) == ("paid", "bank-123")
    assert paid.completion_entry_id is not None and paid.completed_at is not None
    assert await m.balance(chart.PAYOUTS_IN_TRANSIT) == 0
    assert await m.balance(chart.BANK) == bank - 60_000
    assert await m.confirm_payout("po-1") == paid  # idempotent
    assert (await m.store.trial_balance(m.pid)).is_balanced


async def test_a_payout_beyond_available_is_refused_and_changes_nothing(market_pool):
    m = await settled_market(market_pool)
    before = await m.snapshot()

    with pytest.raises(errors.PayoutExceedsAvailable) as raised:
        await pay(m, "po-1", 90_001)

    assert raised.value.code == "payout_exceeds_available"
    assert raised.value.context["available"] == 90_000
    assert await m.snapshot() == before


async def test_pending_money_cannot_be_paid_out(market_pool):
    m = await new_market(market_pool, "alice")
    await m.add_order("INV-1", {"alice": 100_000})  # captured, not settled
    with pytest.raises(errors.PayoutExceedsAvailable) as raised:
        await pay(m, "po-1", 1)
    assert raised.value.context["available"] == 0


async def test_a_failed_payout_returns_the_money_to_available(market_pool):
    m = await settled_market(market_pool)
    await pay(m, "po-1", 50_000)

    failed = await m.fail_payout("po-1", reason="account closed")

    assert (failed.status, failed.failure_reason) == ("failed", "account closed")
    assert await m.seller("alice") == {"pending": 0, "available": 90_000, "debt": 0}
    assert await m.balance(chart.PAYOUTS_IN_TRANSIT) == 0
    assert await m.fail_payout("po-1", reason="again") == failed  # idempotent
    with pytest.raises(errors.PayoutNotPending) as raised:
        await m.confirm_payout("po-1")
    assert raised.value.code == "payout_not_pending"


async def test_a_paid_payout_cannot_fail(market_pool):
    m = await settled_market(market_pool)
    await pay(m, "po-1", 50_000, mark_paid=True)
    before = await m.snapshot()
    with pytest.raises(errors.PayoutNotPending):
        await m.fail_payout("po-1", reason="too late")
    assert await m.snapshot() == before


async def test_mark_paid_books_request_and_payment_at_once(market_pool):
    m = await settled_market(market_pool)
    payout = await pay(m, "po-1", 90_000, mark_paid=True)
    assert payout.status == "paid" and payout.completion_entry_id is not None
    assert await m.seller("alice") == {"pending": 0, "available": 0, "debt": 0}
    assert await m.balance(chart.PAYOUTS_IN_TRANSIT) == 0
    assert await m.balance(chart.BANK) == 100_000 - 90_000  # settled in, paid out: the platform's share is left


async def test_creating_the_same_payout_again_returns_it_and_a_different_one_is_a_conflict(market_pool):
    m = await settled_market(market_pool)
    first = await pay(m, "po-1", 40_000)
    before = await m.snapshot()

    assert await pay(m, "po-1", 40_000) == first
    assert await m.snapshot() == before
    with pytest.raises(errors.IdempotencyConflict):
        await pay(m, "po-1", 41_000)


async def test_unknown_seller_and_unknown_payout(market_pool):
    m = await settled_market(market_pool)
    with pytest.raises(errors.SellerNotFound) as raised:
        await m.create_payout(payout_id="po-1", seller_id="nobody", amount=1)
    assert raised.value.code == "seller_not_found"
    with pytest.raises(errors.PayoutNotFound):
        await m.confirm_payout("po-404")
    with pytest.raises(errors.PayoutNotFound):
        await m.get_payout("po-404")
    with pytest.raises(errors.InvalidEntry):
        await pay(m, "po-2", 0)


async def test_a_debt_is_repaid_before_anything_can_be_paid_out(market_pool):
    m = await settled_market(market_pool)
    await pay(m, "po-1", 90_000)  # in transit: available is 0
    await m.refund("INV-1", 100_000)  # alice's 90 000 is gone: debt
    await m.fail_payout("po-1", reason="rejected")  # 90 000 back in available
    assert await m.seller("alice") == {"pending": 0, "available": 90_000, "debt": 90_000}

    with pytest.raises(errors.PayoutExceedsAvailable) as raised:
        await pay(m, "po-2", 1)
    assert raised.value.context["available"] == 0


async def test_concurrent_payouts_never_overdraw(market_pool):
    m = await settled_market(market_pool)  # 90 000 available
    results = await asyncio.gather(*(pay(m, f"po-{n}", 40_000) for n in range(5)), return_exceptions=True)
    paid = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, errors.PayoutExceedsAvailable)]
    assert (len(paid), len(refused)) == (2, 3)
    assert await m.seller("alice") == {"pending": 0, "available": 10_000, "debt": 0}


async def test_list_payouts_filters_and_pages(market_pool):
    m = await settled_market(market_pool)
    for n in range(5):
        await pay(m, f"po-{n}", 1_000 + n)
    await m.confirm_payout("po-1")
    await m.fail_payout("po-3", reason="x")

    pages, after = [], None
    while True:
        page = await m.list_payouts(seller_id="alice", after=after, limit=2)
        if not page:
            break
        pages.append([p.payout_id for p in page])
        after = (page[-1].created_at, page[-1].payout_id)
    assert pages == [["po-0", "po-1"], ["po-2", "po-3"], ["po-4"]]
    assert [p.payout_id for p in await m.list_payouts(status="pending")] == ["po-0", "po-2", "po-4"]
    assert [p.payout_id for p in await m.list_payouts(status="paid")] == ["po-1"]
    assert await m.list_payouts(seller_id="bob") == []
