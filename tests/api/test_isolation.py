"""One platform's key never sees another platform's data: B gets 404 for each of A's resources,
B's lists hold only B's rows, B cannot act on A's orders or sellers, and DOKU's notifications are
routed by Client-Id to the platform that owns the merchant account."""

from __future__ import annotations

from tests.api.conftest import CLIENT_ID, Stack, assert_problem, notification_body, order_body

A_ITEMS = [("Batik", 100_000, 1, "batik-sari"), ("Kopi", 50_000, 1, "kopi-kita")]
B_CLIENT_ID = "MCH-0002-20000000000002"


async def _platform_a(stack: Stack) -> dict:
    """A's world: two sellers, a captured and settled order, a refund, a paid payout, an exception."""
    await stack.create_seller("batik-sari")
    await stack.create_seller("kopi-kita")
    order = await stack.capture("INV-A-1", A_ITEMS)
    r = await stack.client.post("/v1/orders/INV-A-1/refunds", json={"amount": 10_000, "reason": "a"})
    assert r.status_code == 201, r.text
    refund = r.json()
    summary = await stack.import_settlement(await stack.settlement_csv("INV-A-1"))
    r = await stack.client.post("/v1/payouts", json={"seller_id": "kopi-kita", "amount": 1_000})
    assert r.status_code == 201, r.text
    payout = r.json()
    r = await stack.notify(notification_body("INV-A-GHOST", 12_345))  # an exception for A
    assert r.json()["outcome"] == "unknown_invoice"
    return {"order": order, "refund": refund, "report_id": summary["report_id"], "payout": payout}


async def test_platform_b_gets_404_for_every_one_of_a_s_resources(stack: Stack) -> None:
    a = await _platform_a(stack)
    a_books = await stack.trial_balance()
    b = await stack.new_platform("Toko B", client_id=B_CLIENT_ID)
    capture_entry = a["order"]["links"]["capture_entry"]

    for path, code in [
        ("/v1/orders/INV-A-1", "order_not_found"),
        ("/v1/orders/INV-A-1/refunds", "order_not_found"),
        (f"/v1/refunds/{a['refund']['refund_id']}", "refund_not_found"),
        (f"/v1/payouts/{a['payout']['payout_id']}", "payout_not_found"),
        ("/v1/sellers/batik-sari", "seller_not_found"),
        ("/v1/sellers/batik-sari/balances", "seller_not_found"),
        ("/v1/sellers/batik-sari/statement", "seller_not_found"),
        ("/v1/ledger/accounts/seller:batik-sari:available", "unknown_account"),
        ("/v1/ledger/accounts/seller:batik-sari:available/balance", "unknown_account"),
        ("/v1/ledger/accounts/seller:batik-sari:available/statement", "unknown_account"),
        (capture_entry, "entry_not_found"),
        (f"/v1/ledger/entries/{a['refund']['entry_id']}", "entry_not_found"),
        (f"/v1/settlements/{a['report_id']}", "not_found"),
    ]:
        assert (await stack.client.get(path)).status_code == 200, f"A sees its own {path}"
        assert_problem(await b.client.get(path), 404, code)

    for path, payload, code in [
        ("/v1/orders/INV-A-1/refunds", {"amount": 1_000, "reason": "b"}, "order_not_found"),
        ("/v1/orders/INV-A-1/send", None, "order_not_found"),
        ("/v1/orders/INV-A-1/status-check", None, "order_not_found"),
        (f"/v1/refunds/{a['refund']['refund_id']}/retry", None, "refund_not_found"),
        (f"/v1/payouts/{a['payout']['payout_id']}/confirm", {}, "payout_not_found"),
        (f"/v1/payouts/{a['payout']['payout_id']}/fail", {"reason": "b"}, "payout_not_found"),
        ("/v1/payouts", {"seller_id": "kopi-kita", "amount": 1}, "seller_not_found"),
    ]:
        assert_problem(await b.client.post(path, json=payload), 404, code)
    r = await b.client.post("/v1/orders", json=order_body("INV-B-X", [("Batik", 50_000, 1, "batik-sari")]))
    assert_problem(r, 422, "unknown_seller")  # A's seller is no seller of B's
    summary = (
        await b.client.post(
            "/v1/settlements",
            content=(await stack.settlement_csv("INV-A-1")).encode(),
            headers={"Content-Type": "text/csv"},
        )
    ).json()
    assert (summary["booked"], summary["exceptions"]) == (0, {"unknown_invoice": 1})  # A's report means nothing to B
    assert await stack.trial_balance() == a_books
    assert (await stack.client.get(f"/v1/payouts/{a['payout']['payout_id']}")).json()["status"] == "pending"


async def test_platform_b_s_lists_hold_only_b_s_rows(stack: Stack) -> None:
    await _platform_a(stack)
    b = await stack.new_platform("Toko B", client_id=B_CLIENT_ID)
    assert (await b.client.get("/v1/orders")).json() == {"items": [], "has_more": False, "next_cursor": None}
    assert (await b.client.get("/v1/sellers")).json() == {"items": [], "has_more": False, "next_cursor": None}
    assert (await b.client.get("/v1/payouts")).json() == {"items": [], "has_more": False, "next_cursor": None}
    assert await stack.exceptions(b.client) == []
    accounts = [x["code"] for x in (await b.client.get("/v1/ledger/accounts")).json()["items"]]
    assert accounts and not [code for code in accounts if code.startswith("seller:")]
    tb = (await b.client.get("/v1/ledger/trial-balance")).json()
    assert {line["balance"] for line in tb["lines"]} == {0}
    rec = (await b.client.get("/v1/reconciliation")).json()
    assert (rec["captured"]["count"], rec["open_exceptions"], rec["owed_to_sellers"]["allocated"]) == (0, 0, 0)
    assert (await b.client.get("/v1/platform/gateway")).json()["client_id"] == B_CLIENT_ID

    # B's own rows, under the same names A uses, stay B's.
    r = await b.client.post("/v1/sellers", json={"seller_id": "batik-sari", "name": "Batik Sari cabang B"})
    assert r.status_code == 201, "seller ids are per platform"
    assert [s["name"] for s in (await b.client.get("/v1/sellers")).json()["items"]] == ["Batik Sari cabang B"]
    assert [s["name"] for s in (await stack.client.get("/v1/sellers")).json()["items"]] == [
        "Toko batik-sari",
        "Toko kopi-kita",
    ]
    assert len((await stack.client.get("/v1/orders")).json()["items"]) == 1


async def test_notifications_reach_only_the_platform_that_owns_the_merchant_account(stack: Stack) -> None:
    await _platform_a(stack)
    a_books = await stack.trial_balance()
    b = await stack.new_platform("Toko B", client_id=B_CLIENT_ID)
    await b.client.post("/v1/sellers", json={"seller_id": "batik-sari", "name": "B"})
    # B uses A's invoice number: DOKU keeps orders per merchant, and so do we.
    r = await b.client.post("/v1/orders", json=order_body("INV-A-1", [("Batik", 80_000, 1, "batik-sari")]))
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    await stack.sandbox.approve("INV-A-1", client_id=B_CLIENT_ID)
    await stack.sandbox.drain()
    assert (await b.client.get("/v1/orders/INV-A-1")).json()["status"] == "captured"
    assert (await b.client.get("/v1/sellers/batik-sari/balances")).json()["pending"] == 76_000
    assert await stack.trial_balance() == a_books
    assert (await stack.order("INV-A-1"))["amount"] == 150_000

    # Signed with B's key, an invoice only A has is unknown to B: A's books and exceptions are untouched.
    a_exceptions = await stack.exceptions()
    r = await stack.notify(notification_body("INV-B-ONLY-A", 150_000), client_id=B_CLIENT_ID, secret_key=b.secret_key)
    assert r.json()["outcome"] == "unknown_invoice"
    assert [e["invoice_number"] for e in await stack.exceptions(b.client)] == ["INV-B-ONLY-A"]
    assert await stack.exceptions() == a_exceptions
    # A's Client-Id with B's key is a forgery for A.
    r = await stack.notify(notification_body("INV-A-1", 150_000), client_id=CLIENT_ID, secret_key=b.secret_key)
    assert_problem(r, 401, "invalid_signature")
    assert await stack.trial_balance() == a_books

    r = await b.client.put("/v1/platform/gateway", json={"client_id": CLIENT_ID, "secret_key": "SK-steal"})
    assert_problem(r, 409, "client_id_taken")
    assert (await b.client.get("/v1/platform/gateway")).json()["client_id"] == B_CLIENT_ID
