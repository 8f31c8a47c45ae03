"""Money arrives as integers, and an Idempotency-Key left behind by a dead process is not stuck."""

from __future__ import annotations

import asyncpg
import pytest

from tests.api.conftest import Stack, assert_problem, order_body

ITEMS = [("Songket", 90_000, 1, "songket")]


@pytest.mark.parametrize("amount", ["90000", 90000.0, 90000.5, True], ids=["string", "float", "fraction", "bool"])
async def test_an_order_amount_that_is_not_an_integer_is_refused_and_nothing_is_kept(stack: Stack, amount) -> None:
    await stack.create_seller("songket")
    before = await stack.accounts()
    body = order_body("INV-STRICT-1", ITEMS) | {"amount": amount}
    assert_problem(await stack.client.post("/v1/orders", json=body), 422, "invalid_request")
    assert (await stack.client.get("/v1/orders/INV-STRICT-1")).status_code == 404
    assert await stack.accounts() == before


@pytest.mark.parametrize("amount", ["10000", 10000.0])
async def test_refund_and_payout_amounts_must_be_integers(stack: Stack, amount) -> None:
    await stack.create_seller("songket")
    await stack.capture("INV-STRICT-2", ITEMS)
    before = await stack.accounts()
    r = await stack.client.post("/v1/orders/INV-STRICT-2/refunds", json={"amount": amount, "reason": "x"})
    assert_problem(r, 422, "invalid_request")
    r = await stack.client.post("/v1/payouts", json={"seller_id": "songket", "amount": amount})
    assert_problem(r, 422, "invalid_request")
    assert await stack.accounts() == before
    # the same amounts as integers go through
    r = await stack.client.post("/v1/orders/INV-STRICT-2/refunds", json={"amount": int(amount), "reason": "x"})
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text


async def test_a_key_claimed_by_a_process_that_died_is_taken_over(stack: Stack) -> None:
    body = {"seller_id": "ulos", "name": "Ulos"}
    headers = {"Idempotency-Key": "seller-ulos"}
    first = await stack.client.post("/v1/sellers", json=body, headers=headers)
    assert first.status_code == 201
    conn = await asyncpg.connect(stack.database_url)
    try:
        # Make the claim look like a request whose process died between phases: its lease has lapsed.
        await conn.execute(
            "UPDATE idempotency_keys SET status = 'in_progress', response_status = NULL, response_body = NULL, "
            "owner = 'dead-process', locked_until = now() - interval '1 second' "
            "WHERE platform_id = $1 AND key = 'seller-ulos'",
            stack.platform_id,
        )
        again = await stack.client.post("/v1/sellers", json=body, headers=headers)
        assert_problem(again, 409, "seller_exists")  # the request ran again (the seller was made the first time)
        status = await conn.fetchval(
            "SELECT status FROM idempotency_keys WHERE platform_id = $1 AND key = 'seller-ulos'", stack.platform_id
        )
        assert status == "done"
        # A live lease is still respected.
        await conn.execute(
            "UPDATE idempotency_keys SET status = 'in_progress', owner = 'live-process', "
            "locked_until = now() + interval '1 minute' WHERE platform_id = $1 AND key = 'seller-ulos'",
            stack.platform_id,
        )
        assert_problem(
            await stack.client.post("/v1/sellers", json=body, headers=headers), 409, "idempotency_in_progress"
        )
    finally:
        await conn.close()


async def test_refunds_and_payouts_require_an_idempotency_key_and_move_nothing_without_one(stack: Stack) -> None:
    await stack.create_seller("songket")
    await stack.capture("INV-KEY-1", ITEMS)
    before = await stack.accounts()
    none = {"Idempotency-Key": "-"}  # the stack's client adds a key unless told not to
    r = await stack.client.post("/v1/orders/INV-KEY-1/refunds", json={"amount": 1_000, "reason": "x"}, headers=none)
    assert_problem(r, 400, "idempotency_key_required")
    r = await stack.client.post("/v1/payouts", json={"seller_id": "songket", "amount": 1}, headers=none)
    assert_problem(r, 400, "idempotency_key_required")
    for action, body in (("confirm", {}), ("fail", {"reason": "x"})):
        r = await stack.client.post(f"/v1/payouts/po-x/{action}", json=body, headers=none)
        assert_problem(r, 400, "idempotency_key_required")
    assert await stack.accounts() == before
    assert (await stack.client.get("/v1/orders/INV-KEY-1/refunds")).json() == []
    # Other POSTs keep the key optional.
    r = await stack.client.post("/v1/sellers", json={"seller_id": "tenun", "name": "Tenun"}, headers=none)
    assert r.status_code == 201, r.text


async def test_pasting_the_same_refund_twice_with_its_key_refunds_once(stack: Stack) -> None:
    await stack.create_seller("songket")
    await stack.capture("INV-KEY-2", ITEMS)
    key = {"Idempotency-Key": "refund-INV-KEY-2"}
    body = {"amount": 10_000, "reason": "item returned"}
    first = await stack.client.post("/v1/orders/INV-KEY-2/refunds", json=body, headers=key)
    again = await stack.client.post("/v1/orders/INV-KEY-2/refunds", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    refunds = (await stack.client.get("/v1/orders/INV-KEY-2/refunds")).json()
    assert [r["amount"] for r in refunds] == [10_000]
    assert (await stack.order("INV-KEY-2"))["refunded_amount"] == 10_000
