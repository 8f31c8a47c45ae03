"""PATCH /v1/sellers/{id}: name, commission override, DOKU settlement account and metadata change;
fields left out stay; orders already created keep the allocation they froze."""

from __future__ import annotations

from tests.api.conftest import CLIENT_ID, Stack, assert_problem

ITEMS = [("Tenun ikat", 100_000, 1, "lurik")]


async def test_a_patch_changes_only_what_it_names_and_never_a_frozen_allocation(stack: Stack) -> None:
    await stack.create_seller("lurik", commission_bps=300, metadata={"tier": "gold"})
    before = await stack.place_order("INV-PATCH-1", ITEMS)
    assert before["allocation"]["sellers"][0]["commission"] == 3_000

    r = await stack.client.patch("/v1/sellers/lurik", json={"name": "Lurik Jaya", "commission_bps": 1_000})
    assert r.status_code == 200, r.text
    seller = r.json()
    assert (seller["name"], seller["commission_bps"], seller["metadata"]) == ("Lurik Jaya", 1_000, {"tier": "gold"})
    assert (await stack.client.get("/v1/sellers/lurik")).json() == seller

    await stack.sandbox.approve("INV-PATCH-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    captured = await stack.wait_for_status("INV-PATCH-1", "captured")
    assert captured["allocation"] == before["allocation"]  # frozen at 3 %
    assert (await stack.balances("lurik"))["pending"] == 97_000
    after = await stack.place_order("INV-PATCH-2", ITEMS)
    assert after["allocation"]["sellers"][0]["commission"] == 10_000  # new orders: 10 %

    r = await stack.client.patch(
        "/v1/sellers/lurik", json={"commission_bps": None, "doku_settlement_id": "SBA-123", "metadata": {}}
    )
    assert r.status_code == 200, r.text
    seller = r.json()
    assert (seller["commission_bps"], seller["doku_settlement_id"], seller["metadata"]) == (None, "SBA-123", {})
    assert seller["name"] == "Lurik Jaya"
    r = await stack.client.patch("/v1/sellers/lurik", json={"doku_settlement_id": None})
    assert r.json()["doku_settlement_id"] is None
    assert (await stack.client.patch("/v1/sellers/lurik", json={})).json() == r.json()  # nothing to change
    third = await stack.place_order("INV-PATCH-3", ITEMS)
    assert third["allocation"]["sellers"][0]["commission"] == 5_000  # the platform's default again


async def test_bad_patches_are_refused_and_change_nothing(stack: Stack) -> None:
    seller = await stack.create_seller("lurik")
    for body, status, code in (
        ({"commission_bps": 10_001}, 422, "invalid_request"),
        ({"commission_bps": -1}, 422, "invalid_request"),
        ({"commission_bps": "500"}, 422, "invalid_request"),
        ({"name": ""}, 422, "invalid_request"),
        ({"name": None}, 422, "invalid_request"),
        ({"seller_id": "other"}, 422, "unknown_field"),
        ({"allocation": {}}, 422, "unknown_field"),
    ):
        assert_problem(await stack.client.patch("/v1/sellers/lurik", json=body), status, code)
    assert_problem(
        await stack.client.patch("/v1/sellers/lurik", content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "malformed_json",
    )
    assert_problem(await stack.client.patch("/v1/sellers/nobody", json={"name": "x"}), 404, "seller_not_found")
    other = await stack.new_platform("Toko Lain")
    assert_problem(await other.client.patch("/v1/sellers/lurik", json={"name": "mine"}), 404, "seller_not_found")
    assert (await stack.client.get("/v1/sellers/lurik")).json() == seller
