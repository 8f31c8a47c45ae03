"""One pagination style on every list (``limit`` validated, an opaque ``cursor``, ``items``,
``has_more``, ``next_cursor``), filters validated, one charset on CSV answers."""

from __future__ import annotations

import pytest

from tests.api.conftest import Stack, assert_problem

LISTS = (
    "/v1/sellers",
    "/v1/orders",
    "/v1/payouts",
    "/v1/ledger/accounts",
    "/v1/reconciliation/exceptions",
    "/v1/sellers/tenun/statement",
    "/v1/ledger/accounts/platform:commission/statement",
)


@pytest.mark.parametrize("limit", ["-1", "0", "501", "ten"])
async def test_a_limit_out_of_range_is_invalid_request_on_every_list(stack: Stack, limit: str) -> None:
    await stack.create_seller("tenun")
    for path in LISTS:
        assert_problem(await stack.client.get(path, params={"limit": limit}), 422, "invalid_request")


async def test_every_list_answers_items_has_more_and_next_cursor(stack: Stack) -> None:
    await stack.create_seller("tenun")
    for path in LISTS:
        page = (await stack.client.get(path)).json()
        assert {"has_more", "next_cursor"} <= set(page), path
        assert ("items" in page) != ("lines" in page), path  # statements keep their name for the items
        assert page["has_more"] is (page["next_cursor"] is not None)
    for path in LISTS:
        assert_problem(await stack.client.get(path, params={"cursor": "not-a-cursor!"}), 422, "invalid_request")


async def test_sellers_page_through_with_an_opaque_cursor(stack: Stack) -> None:
    made = [f"seller-{n:02d}" for n in range(5)]
    for seller in reversed(made):
        await stack.create_seller(seller)
    seen, cursor, pages = [], None, 0
    while True:
        page = (
            await stack.client.get("/v1/sellers", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        ).json()
        seen += [s["seller_id"] for s in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert (seen, pages) == (made, 3)


async def test_an_unknown_status_filter_is_invalid_request_not_an_empty_list(stack: Stack) -> None:
    assert_problem(await stack.client.get("/v1/orders", params={"status": "bogus"}), 422, "invalid_request")
    assert_problem(await stack.client.get("/v1/payouts", params={"status": "bogus"}), 422, "invalid_request")
    assert (await stack.client.get("/v1/orders", params={"status": "captured"})).status_code == 200
    assert (await stack.client.get("/v1/payouts", params={"status": "paid"})).status_code == 200


async def test_csv_answers_carry_one_charset_and_the_settlement_import_answers_201(stack: Stack) -> None:
    await stack.create_seller("tenun")
    await stack.capture("INV-CSV-1", [("Tenun", 120_000, 1, "tenun")])
    r = await stack.client.post(
        "/v1/settlements",
        content=(await stack.settlement_csv("INV-CSV-1")).encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    for path in ("/v1/sellers/tenun/statement?format=csv", "/v1/reconciliation?format=csv"):
        r = await stack.client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/csv; charset=utf-8", r.headers["content-type"]
