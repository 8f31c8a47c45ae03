"""The webhook relay's claims on real PostgreSQL: the platforms with deliveries due are found by a
plain read, and each claim (the statement that locks deliveries) takes one platform's rows only —
the shape a cluster distributed by platform needs (docs/scale-out.md)."""

from __future__ import annotations

from ledger.service import webhooks
from ledger.service.webhooks import EndpointDraft
from tests.integration.marketplace_fixtures import (  # noqa: F401 (market_pool is a fixture)
    Market,
    market_pool,
    new_market,
    plain,
)


async def market_with_a_due_delivery(pool, invoice: str) -> Market:
    m = await new_market(pool, "alice")
    draft = EndpointDraft(url="http://127.0.0.1:9/hook", events=["order.captured"])
    await webhooks.create_endpoint(m.db, plain(m.db, m.pid), m.pid, draft, allow_loopback=True)
    await m.add_order(invoice, {"alice": 50_000})  # captured: its order.captured event is due
    return m


async def test_each_claim_takes_one_platforms_deliveries_only(market_pool):
    one = await market_with_a_due_delivery(market_pool, "INV-A")
    two = await market_with_a_due_delivery(market_pool, "INV-B")

    due = await one.db.read(lambda uow: uow.webhooks.due_platforms(100))
    assert {one.pid, two.pid} <= set(due)

    first = await one.db.transaction(lambda uow: uow.webhooks.claim(one.pid, 100, "lease-1", 30.0))
    assert [c.platform_id for c in first] == [one.pid]
    assert await one.db.transaction(lambda uow: uow.webhooks.claim(one.pid, 100, "lease-2", 30.0)) == []  # leased

    second = await one.db.transaction(lambda uow: uow.webhooks.claim(two.pid, 100, "lease-3", 30.0))
    assert [c.platform_id for c in second] == [two.pid]
    after = await one.db.read(lambda uow: uow.webhooks.due_platforms(100))
    assert one.pid not in after and two.pid not in after  # both leased now
