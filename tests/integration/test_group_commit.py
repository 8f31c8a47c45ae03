"""The group commit of refunds and payouts on real PostgreSQL: many requests share one transaction
per platform (each in its own savepoint), a refused member is rolled back alone with its events,
a crash before the commit leaves nothing of any member, and every retry under its Idempotency-Key
lands exactly once."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from ledger import chart, errors
from ledger.service import payouts, refunds
from ledger.service.faults import Faults, InjectedCrash
from ledger.service.groupcommit import GroupCommitter
from ledger.service.idempotency import Answer, Keyed, Replayed
from ledger.service.payouts import PayoutDraft
from ledger.service.refunds import RefundDraft
from ledger.service.sellers import SellerDraft, add_seller
from ledger.service.settlement import import_settlement_report
from tests.integration.marketplace_fixtures import (  # noqa: F401 (market_pool is a fixture)
    AlwaysYes,
    Market,
    line_for,
    market_pool,
    new_market,
    report_csv,
)

ORDERS = 12


def keyed(m: Market, group: GroupCommitter | None, key: str, *, faults: Faults | None = None) -> Keyed:
    return Keyed(
        m.db,
        m.pid,
        key,
        key.encode(),
        lambda result: Answer(status=201, body=msgspec.json.encode(result)),
        faults=faults or Faults([]),
        group=group,
    )


async def captured_market(pool, orders: int = ORDERS) -> Market:
    m = await new_market(pool, "alice", "bob")
    for i in range(orders):
        await m.add_order(f"INV-{i}", {"alice": 60_000, "bob": 40_000})
    return m


async def count(m: Market, sql: str) -> int:
    return await m.pool.fetchval(sql, m.pid)


async def test_concurrent_refunds_share_transactions_and_each_lands_exactly_once(market_pool):
    m = await captured_market(market_pool)
    group = GroupCommitter(m.db, in_flight=1)
    draft = RefundDraft(amount=30_000, reason="returned", mode="manual", reference="bank-1")
    try:
        done = await asyncio.gather(
            *(
                refunds.create_refund(m.db, AlwaysYes(), keyed(m, group, f"k-{i}"), m.pid, f"INV-{i}", draft)
                for i in range(ORDERS)
            )
        )
    finally:
        await group.stop()

    assert [r.status for r in done] == ["succeeded"] * ORDERS
    # two phases a refund (reserve, book): 24 members in fewer transactions than members
    assert group.members == 2 * ORDERS
    assert group.groups < group.members
    assert await count(m, "SELECT count(*) FROM journal_entries WHERE platform_id = $1 AND kind = 'refund'") == ORDERS
    assert [(await m.order(f"INV-{i}")).refunded_amount for i in range(ORDERS)] == [30_000] * ORDERS
    events = await count(m, "SELECT count(*) FROM events WHERE platform_id = $1 AND type = 'refund.succeeded'")
    assert events == ORDERS
    keys = await count(m, "SELECT count(*) FROM idempotency_keys WHERE platform_id = $1 AND status = 'done'")
    assert keys == ORDERS
    assert (await m.store.trial_balance(m.pid)).is_balanced


async def test_a_refused_member_is_rolled_back_alone_with_its_events(market_pool):
    m = await captured_market(market_pool, orders=3)
    group = GroupCommitter(m.db, in_flight=1)
    ok = RefundDraft(amount=10_000, reason="returned", mode="manual")
    too_much = RefundDraft(amount=100_001, reason="greedy", mode="manual")
    try:
        outcomes = await asyncio.gather(
            refunds.create_refund(m.db, AlwaysYes(), keyed(m, group, "a"), m.pid, "INV-0", ok),
            refunds.create_refund(m.db, AlwaysYes(), keyed(m, group, "b"), m.pid, "INV-1", too_much),
            refunds.create_refund(m.db, AlwaysYes(), keyed(m, group, "c"), m.pid, "INV-2", ok),
            return_exceptions=True,
        )
    finally:
        await group.stop()

    assert isinstance(outcomes[1], errors.RefundExceedsCaptured)
    assert [o.status for o in (outcomes[0], outcomes[2])] == ["succeeded", "succeeded"]  # type: ignore[union-attr]
    assert await count(m, "SELECT count(*) FROM refunds WHERE platform_id = $1") == 2
    created = await m.pool.fetch(
        "SELECT chain FROM events WHERE platform_id = $1 AND type LIKE 'refund.%' ORDER BY chain", m.pid
    )
    assert len(created) == 4  # created + succeeded for the two that landed, nothing of the refused one
    assert (await m.order("INV-1")).refund_reserved == 0
    assert (await m.order("INV-1")).refunded_amount == 0
    assert (await m.store.trial_balance(m.pid)).is_balanced


async def test_a_crash_before_the_commit_leaves_nothing_of_any_member_and_retries_land_once(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 100_000})
    await import_settlement_report(m.db, m.pid, source_name="r.csv", content=report_csv([line_for(order)]))
    group = GroupCommitter(m.db, in_flight=1)
    crash = Faults(["finish:before_commit"])
    drafts = [PayoutDraft(seller_id="alice", amount=10_000 + i) for i in range(3)]
    try:
        first = await asyncio.gather(
            payouts.create_payout(m.db, keyed(m, group, "p-0", faults=crash), m.pid, drafts[0]),
            payouts.create_payout(m.db, keyed(m, group, "p-1"), m.pid, drafts[1]),
            payouts.create_payout(m.db, keyed(m, group, "p-2"), m.pid, drafts[2]),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, InjectedCrash) for outcome in first)  # one transaction: all died
        assert await count(m, "SELECT count(*) FROM payouts WHERE platform_id = $1") == 0
        assert await m.balance(chart.PAYOUTS_IN_TRANSIT) == 0

        again = await asyncio.gather(
            *(payouts.create_payout(m.db, keyed(m, group, f"p-{i}"), m.pid, drafts[i]) for i in range(3))
        )
        with pytest.raises(Replayed) as replayed:  # a finished key answers what it answered
            await payouts.create_payout(m.db, keyed(m, group, "p-1"), m.pid, drafts[1])
    finally:
        await group.stop()

    assert [p.amount for p in again] == [10_000, 10_001, 10_002]
    assert msgspec.json.decode(replayed.value.answer.body)["payout_id"] == again[1].payout_id
    assert await count(m, "SELECT count(*) FROM payouts WHERE platform_id = $1") == 3
    assert await m.balance(chart.PAYOUTS_IN_TRANSIT) == 30_003
    assert (await m.store.trial_balance(m.pid)).is_balanced


async def test_payouts_racing_for_one_sellers_money_never_overdraw_it(market_pool):
    m = await new_market(market_pool, "alice")
    order = await m.add_order("INV-1", {"alice": 100_000})  # 90,000 available after settlement
    await import_settlement_report(m.db, m.pid, source_name="r.csv", content=report_csv([line_for(order)]))
    group = GroupCommitter(m.db, in_flight=2)
    try:
        outcomes = await asyncio.gather(
            *(
                payouts.create_payout(
                    m.db, keyed(m, group, f"p-{i}"), m.pid, PayoutDraft(seller_id="alice", amount=20_000)
                )
                for i in range(6)
            ),
            return_exceptions=True,
        )
    finally:
        await group.stop()

    paid = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(paid) == 4 and all(isinstance(o, errors.PayoutExceedsAvailable) for o in refused)
    assert await m.seller("alice") == {"pending": 0, "available": 10_000, "debt": 0}


async def test_groups_never_span_platforms(market_pool):
    one = await captured_market(market_pool, orders=2)
    two = await captured_market(market_pool, orders=2)
    group = GroupCommitter(one.db, in_flight=1)
    draft = RefundDraft(amount=5_000, reason="returned", mode="manual")
    seen: list[set[str]] = []
    real_group = one.db.group

    async def spy(works, **kwargs):
        platforms: set[str] = set()
        for work in works:
            platforms.add(work.__platform__)  # type: ignore[attr-defined]
        seen.append(platforms)
        return await real_group(works, **kwargs)

    original_run = group.run

    async def tagged_run(platform_id, work):
        async def wrapped(uow):
            return await work(uow)

        wrapped.__platform__ = platform_id  # type: ignore[attr-defined]
        return await original_run(platform_id, wrapped)

    one.db.group = spy  # type: ignore[method-assign]
    group.run = tagged_run  # type: ignore[method-assign]
    try:
        await asyncio.gather(
            *(
                refunds.create_refund(m.db, AlwaysYes(), keyed(m, group, f"{m.pid}-{i}"), m.pid, f"INV-{i}", draft)
                for m in (one, two)
                for i in range(2)
            )
        )
    finally:
        await group.stop()
    assert seen and all(len(platforms) == 1 for platforms in seen)
    for m in (one, two):
        assert await count(m, "SELECT count(*) FROM refunds WHERE platform_id = $1 AND status = 'succeeded'") == 2


async def test_without_a_committer_grouped_work_is_a_plain_transaction(market_pool):
    m = await captured_market(market_pool, orders=1)
    draft = RefundDraft(amount=5_000, reason="returned", mode="manual")
    refund = await refunds.create_refund(m.db, AlwaysYes(), keyed(m, None, "solo"), m.pid, "INV-0", draft)
    assert refund.status == "succeeded"
    assert (await m.order("INV-0")).refunded_amount == 5_000


async def test_a_member_failing_after_its_writes_is_undone_alone(market_pool):
    m = await new_market(market_pool)

    def seller(seller_id: str, *, then_fail: bool = False):
        async def work(uow):
            await add_seller(uow, m.pid, SellerDraft(seller_id=seller_id, name=seller_id.title()))
            if then_fail:
                raise ValueError("changed its mind")
            return seller_id

        return work

    outcomes = await m.db.group([seller("ani"), seller("budi", then_fail=True), seller("citra")])

    assert outcomes[0] == "ani" and outcomes[2] == "citra"
    assert isinstance(outcomes[1], ValueError)
    rows = await m.pool.fetch("SELECT seller_id FROM sellers WHERE platform_id = $1 ORDER BY 1", m.pid)
    assert [r["seller_id"] for r in rows] == ["ani", "citra"]


async def test_a_fatal_error_in_one_member_commits_nothing_of_the_group(market_pool):
    m = await new_market(market_pool)

    async def fine(uow):
        await add_seller(uow, m.pid, SellerDraft(seller_id="dewi", name="Dewi"))

    async def dies(uow):
        raise InjectedCrash("the process died here")

    with pytest.raises(InjectedCrash):
        await m.db.group([fine, dies], fatal=(InjectedCrash,))
    assert await count(m, "SELECT count(*) FROM sellers WHERE platform_id = $1") == 0
