"""Bad input over real HTTP: each answered with ``application/problem+json``, its HTTP status and
stable ``code``, and no change to any balance (the whole trial balance is compared before and
after). Idempotency-Key on every POST: the same request replays the first answer, another request
with the same key is a conflict."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from tests.api.conftest import CLIENT_ID, Stack, assert_problem, order_body, poll

ITEMS = [("Songket", 80_000, 1, "songket"), ("Sambal", 20_000, 2, "sambal")]


async def _market(stack: Stack) -> None:
    """Two sellers, one captured and settled order, and some money available to songket."""
    await stack.create_seller("songket")
    await stack.create_seller("sambal")
    await stack.capture("INV-BASE-1", ITEMS)
    await stack.import_settlement(await stack.settlement_csv("INV-BASE-1"))
    assert (await stack.balances("songket"))["available"] == 76_000


async def test_refund_beyond_captured_and_payout_beyond_available_change_nothing(stack: Stack) -> None:
    await _market(stack)
    await stack.place_order("INV-OPEN-1", [("Songket", 50_000, 1, "songket")])
    before = await stack.trial_balance()

    r = await stack.client.post("/v1/orders/INV-BASE-1/refunds", json={"amount": 120_001, "reason": "too much"})
    body = assert_problem(r, 422, "refund_exceeds_captured")
    assert body["extra"] == {"requested": 120_001, "refundable": 120_000}
    r = await stack.client.post("/v1/orders/INV-BASE-1/refunds", json={"amount": 100_000, "reason": "part"})
    assert r.status_code == 201 and r.json()["status"] == "succeeded"
    mid = await stack.trial_balance()
    r = await stack.client.post("/v1/orders/INV-BASE-1/refunds", json={"amount": 20_001, "reason": "rest+1"})
    assert_problem(r, 422, "refund_exceeds_captured")
    r = await stack.client.post("/v1/orders/INV-OPEN-1/refunds", json={"amount": 1_000, "reason": "not paid"})
    assert_problem(r, 409, "order_not_captured")
    r = await stack.client.post("/v1/orders/INV-NONE/refunds", json={"amount": 1_000, "reason": "no order"})
    assert_problem(r, 404, "order_not_found")
    r = await stack.client.post(
        "/v1/orders/INV-BASE-1/refunds", json={"amount": 1_000, "reason": "who", "parties": {"nobody": 1_000}}
    )
    assert_problem(r, 422, "unknown_party")
    r = await stack.client.post(
        "/v1/orders/INV-BASE-1/refunds", json={"amount": 1_000, "reason": "manual", "mode": "manual"}
    )
    assert_problem(r, 422, "invalid_request")  # a manual refund needs the transfer's reference
    r = await stack.client.post("/v1/orders/INV-BASE-1/refunds", json={"amount": 0, "reason": "zero"})
    assert_problem(r, 422, "invalid_request")
    r = await stack.client.post(
        "/v1/orders/INV-BASE-1/refunds", json={"amount": 1_000, "reason": "sum", "parties": {"songket": 999}}
    )
    assert_problem(r, 422, "explicit_amounts_do_not_sum")
    r = await stack.client.post(
        "/v1/orders/INV-BASE-1/refunds", json={"amount": 20_000, "reason": "all", "parties": {"sambal": 20_000}}
    )
    assert_problem(r, 422, "reversal_exceeds_allocation")  # sambal has under 20 000 of its 38 000 left to give
    assert await stack.trial_balance() == mid
    assert len(stack.sandbox.order("INV-BASE-1", client_id=CLIENT_ID).refunds) == 1  # DOKU was asked once
    assert before != mid

    available = (await stack.balances("songket"))["available"]
    r = await stack.client.post("/v1/payouts", json={"seller_id": "songket", "amount": available + 1})
    body = assert_problem(r, 422, "payout_exceeds_available")
    assert body["extra"] == {"requested": available + 1, "available": available}
    r = await stack.client.post("/v1/payouts", json={"seller_id": "ghost", "amount": 1})
    assert_problem(r, 404, "seller_not_found")
    r = await stack.client.post("/v1/payouts", json={"seller_id": "songket", "amount": 0})
    assert_problem(r, 422, "invalid_request")
    assert await stack.trial_balance() == mid

    r = await stack.client.post("/v1/payouts", json={"seller_id": "songket", "amount": 1_000, "status": "paid"})
    assert r.status_code == 201
    paid = await stack.trial_balance()
    r = await stack.client.post(f"/v1/payouts/{r.json()['payout_id']}/fail", json={"reason": "too late"})
    assert_problem(r, 409, "payout_not_pending")
    r = await stack.client.post("/v1/payouts/po-nope/confirm", json={})
    assert_problem(r, 404, "payout_not_found")
    assert await stack.trial_balance() == paid


async def test_racing_refunds_and_payouts_never_together_exceed_the_limit(stack: Stack) -> None:
    await _market(stack)  # INV-BASE-1: 120 000 captured and settled; songket has 76 000 available
    racing = [
        stack.client.post("/v1/orders/INV-BASE-1/refunds", json={"amount": 70_000, "reason": f"race {n}"})
        for n in range(2)
    ]
    answers = sorted((r.status_code, r.json().get("code")) for r in await asyncio.gather(*racing))
    assert answers == [(201, None), (422, "refund_exceeds_captured")]
    assert [x.amount for x in stack.sandbox.order("INV-BASE-1", client_id=CLIENT_ID).refunds] == [70_000]
    await stack.assert_books_balance()

    available = (await stack.balances("songket"))["available"]
    racing = [
        stack.client.post("/v1/payouts", json={"seller_id": "songket", "amount": available // 2 + 1}) for _ in range(2)
    ]
    answers = sorted((r.status_code, r.json().get("code")) for r in await asyncio.gather(*racing))
    assert answers == [(201, None), (422, "payout_exceeds_available")]
    assert (await stack.balances("songket"))["available"] == available - (available // 2 + 1)
    await stack.assert_books_balance()


async def test_bad_orders_are_refused_with_their_code_and_change_nothing(stack: Stack) -> None:
    await _market(stack)
    before = await stack.trial_balance()
    orders_before = (await stack.client.get("/v1/orders")).json()["items"]

    cases: list[tuple[dict | bytes, int, str]] = [
        (order_body("INV-BAD-1", [("Kain", 50_000, 1, "nobody")]), 422, "unknown_seller"),
        (order_body("INV-BAD-2", [("Kain", 50_000, 1, "songket"), ("X", 10_000, 1, "ghost")]), 422, "unknown_seller"),
        (b'{"invoice_number": "INV-BAD-3", "amount": 50000,', 400, "malformed_json"),
        (b"not json at all", 400, "malformed_json"),
        (
            {**order_body("INV-BAD-4", [("Kain", 50_000, 1, "songket")]), "amount": "lima puluh ribu"},
            422,
            "invalid_request",
        ),
        ({**order_body("INV-BAD-5", [("Kain", 50_000, 1, "songket")]), "amount": 50_000.5}, 422, "invalid_request"),
        ({**order_body("INV-BAD-5b", [("Kain", 50_000, 1, "songket")]), "amount": True}, 422, "invalid_request"),
        ({**order_body("INV-BAD-6", [("Kain", 50_000, 1, "songket")]), "amount": -1}, 422, "invalid_request"),
        (
            {k: v for k, v in order_body("INV-BAD-7", [("Kain", 50_000, 1, "songket")]).items() if k != "customer"},
            422,
            "invalid_request",
        ),
        (order_body("", [("Kain", 50_000, 1, "songket")]), 422, "invalid_invoice_number"),
        ({**order_body("INV-BAD-8", [("Kain", 50_000, 1, "songket")]), "line_items": []}, 422, "invalid_request"),
        ({**order_body("INV-BAD-9", [("Kain", 50_000, 1, "songket")]), "amount": 60_000}, 422, "split_invalid"),
        (
            order_body("INV-BAD-10", [("Kain", 50_000, 1, "songket")], split={"type": "cart", "fixed_fee": 50_001}),
            422,
            "split_invalid",
        ),
        (
            order_body(
                "INV-BAD-11",
                [("Kain", 50_000, 1, "songket")],
                split={
                    "type": "explicit",
                    "shares": [{"party": "songket", "bps": 9_000}, {"party": "sambal", "bps": 2_000}],
                },
            ),
            422,
            "split_invalid",
        ),
        (
            order_body(
                "INV-BAD-12",
                [("Kain", 50_000, 1, "songket")],
                split={"type": "explicit", "shares": [{"party": "songket", "bps": 5_000, "fixed": 1}]},
            ),
            422,
            "split_invalid",
        ),
        (
            order_body(
                "INV-BAD-13",
                [("Kain", 50_000, 1, "songket")],
                split={"type": "explicit", "shares": [{"party": "ghost", "bps": 5_000}]},
            ),
            422,
            "unknown_seller",
        ),
        (order_body("INV-BASE-1", ITEMS), 409, "order_exists"),
    ]
    for payload, status, code in cases:
        if isinstance(payload, bytes):
            r = await stack.client.post("/v1/orders", content=payload, headers={"Content-Type": "application/json"})
        else:
            r = await stack.client.post("/v1/orders", json=payload)
        body = assert_problem(r, status, code)
        if code == "split_invalid":
            assert body["errors"] and all(e["code"] for e in body["errors"]), body
    assert await stack.trial_balance() == before
    assert (await stack.client.get("/v1/orders")).json()["items"] == orders_before
    assert [o.invoice_number for o in stack.sandbox.orders()] == ["INV-BASE-1"]  # DOKU was never called


async def test_split_invalid_lists_every_problem_at_once(stack: Stack) -> None:
    await stack.create_seller("songket")
    r = await stack.client.post(
        "/v1/orders",
        json=order_body(
            "INV-MANY-1",
            [("Kain", 50_000, 1, "songket")],
            split={
                "type": "explicit",
                "remainder_to": "songket",
                "shares": [{"party": "songket", "bps": 6_000}, {"party": "songket", "bps": 5_000}],
            },
        ),
    )
    body = assert_problem(r, 422, "split_invalid")
    codes = {e["code"] for e in body["errors"]}
    assert {"duplicate_party", "percent_over_100"} <= codes, codes


async def test_bad_sellers_and_settlement_reports(stack: Stack) -> None:
    await stack.create_seller("songket")
    before = await stack.trial_balance()
    r = await stack.client.post("/v1/sellers", json={"seller_id": "songket", "name": "again"})
    assert_problem(r, 409, "seller_exists")
    r = await stack.client.post("/v1/sellers", json={"seller_id": "platform", "name": "sneaky"})
    assert_problem(r, 422, "reserved_seller_id")
    r = await stack.client.post("/v1/sellers", json={"seller_id": "has space", "name": "x"})
    assert_problem(r, 422, "invalid_request")
    r = await stack.client.post("/v1/sellers", json={"seller_id": "ok", "name": "x", "commission_bps": 10_001})
    assert_problem(r, 422, "invalid_request")
    r = await stack.client.post("/v1/sellers", content=b"{", headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "malformed_json")
    r = await stack.client.post("/v1/settlements", content=b"{", headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "malformed_json")
    r = await stack.client.post("/v1/settlements", json={"csv": "a,b\n1,2\n", "lines": []})
    assert_problem(r, 422, "invalid_request")
    r = await stack.client.post(
        "/v1/settlements", content=b"invoice,amount\nINV-1,5\n", headers={"Content-Type": "text/csv"}
    )
    assert_problem(r, 422, "settlement_report_invalid")
    r = await stack.client.post(
        "/v1/payouts", content=b'{"seller_id": "songket", "amount": 5', headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 400, "malformed_json")
    assert await stack.trial_balance() == before
    assert [s["seller_id"] for s in (await stack.client.get("/v1/sellers")).json()["items"]] == ["songket"]


async def test_no_or_invalid_api_key_is_unauthorized(stack: Stack) -> None:
    await stack.create_seller("songket")
    before = await stack.trial_balance()
    keys = [
        None,
        "",
        "Bearer",
        "Basic abc",
        "Bearer sl_nope",
        f"Bearer {stack.api_key}x",
        "Bearer " + stack.api_key.rsplit("_", 1)[0] + "_wrongsecret",
        "Bearer sl_" + stack.platform_id + "_deadbeef_secret",
    ]
    for key in keys:
        headers = {"Authorization": key} if key is not None else {}
        for method, path, payload in [
            ("GET", "/v1/orders", None),
            ("GET", "/v1/ledger/trial-balance", None),
            ("POST", "/v1/sellers", {"seller_id": "evil", "name": "x"}),
            ("POST", "/v1/payouts", {"seller_id": "songket", "amount": 1}),
        ]:
            r = await stack.anon.request(method, path, json=payload, headers=headers)
            assert_problem(r, 401, "unauthorized")
    assert await stack.trial_balance() == before
    assert [s["seller_id"] for s in (await stack.client.get("/v1/sellers")).json()["items"]] == ["songket"]


async def test_an_order_on_a_platform_without_doku_credentials(stack: Stack) -> None:
    bare = await stack.new_platform("Toko Tanpa DOKU")
    r = await bare.client.post("/v1/sellers", json={"seller_id": "solo", "name": "Solo"})
    assert r.status_code == 201
    r = await bare.client.post("/v1/orders", json=order_body("INV-NOGW-1", [("Kain", 50_000, 1, "solo")]))
    assert_problem(r, 409, "gateway_not_configured")
    r = await bare.client.get("/v1/platform/gateway")
    assert_problem(r, 409, "gateway_not_configured")
    r = await bare.client.get("/v1/ledger/trial-balance")
    assert r.json()["totals"] == {"IDR": 0} and {x["balance"] for x in r.json()["lines"]} == {0}
    assert (await bare.client.get("/v1/orders")).json()["items"] == []
    assert stack.sandbox.orders() == ()


async def test_unknown_paths_and_methods_are_problems_too(stack: Stack) -> None:
    r = await stack.client.get("/v1/nothing-here")
    assert_problem(r, 404, "not_found")
    r = await stack.client.delete("/v1/orders")
    assert_problem(r, 405, "method_not_allowed")
    r = await stack.client.get("/v1/orders/INV-NOPE")
    assert_problem(r, 404, "order_not_found")
    r = await stack.client.get("/v1/orders", params={"cursor": "not-a-cursor"})
    assert_problem(r, 422, "invalid_request")


# -- Idempotency-Key ---------------------------------------------------------------------------


async def _same_key_twice(client: httpx.AsyncClient, path: str, key: str, payload: dict | None) -> httpx.Response:
    """POST twice with one key: the second answer is the first one, replayed."""
    headers = {"Idempotency-Key": key}
    first = await client.post(path, json=payload, headers=headers)
    second = await client.post(path, json=payload, headers=headers)
    assert second.status_code == first.status_code, (first.text, second.text)
    assert second.content == first.content
    assert second.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    return first


async def test_every_post_replays_its_first_answer_for_the_same_key_and_body(stack: Stack) -> None:
    r = await _same_key_twice(stack.client, "/v1/sellers", "k-seller", {"seller_id": "songket", "name": "Songket"})
    assert r.status_code == 201
    await stack.create_seller("sambal")
    r = await _same_key_twice(stack.client, "/v1/orders", "k-order", order_body("INV-IDEM-1", ITEMS))
    assert r.status_code == 201
    assert [o.invoice_number for o in stack.sandbox.orders()] == ["INV-IDEM-1"]  # sent to DOKU once
    r = await _same_key_twice(stack.client, "/v1/orders/INV-IDEM-1/send", "k-send", None)
    assert r.status_code == 200 and r.json()["status"] == "pending"
    await stack.sandbox.approve("INV-IDEM-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    await stack.wait_for_status("INV-IDEM-1", "captured")
    r = await _same_key_twice(stack.client, "/v1/orders/INV-IDEM-1/status-check", "k-status", None)
    assert r.status_code == 200 and r.json()["status"] == "captured"

    r = await _same_key_twice(
        stack.client, "/v1/orders/INV-IDEM-1/refunds", "k-refund", {"amount": 10_000, "reason": "one refund"}
    )
    assert r.status_code == 201
    refund_id = r.json()["refund_id"]
    assert [x.amount for x in stack.sandbox.order("INV-IDEM-1", client_id=CLIENT_ID).refunds] == [10_000]
    assert len((await stack.client.get("/v1/orders/INV-IDEM-1/refunds")).json()) == 1
    r = await _same_key_twice(stack.client, f"/v1/refunds/{refund_id}/retry", "k-retry", None)
    assert r.json()["status"] == "succeeded"

    report = await stack.settlement_csv("INV-IDEM-1")
    headers = {"Idempotency-Key": "k-settle", "Content-Type": "text/csv"}
    first = await stack.client.post("/v1/settlements", content=report.encode(), headers=headers)
    second = await stack.client.post("/v1/settlements", content=report.encode(), headers=headers)
    assert first.status_code == 201 and first.json()["booked"] == 1
    assert (second.content, second.headers.get("idempotent-replayed")) == (first.content, "true")

    available = (await stack.balances("songket"))["available"]
    r = await _same_key_twice(stack.client, "/v1/payouts", "k-payout", {"seller_id": "songket", "amount": 1_000})
    payout_id = r.json()["payout_id"]
    assert (await stack.balances("songket"))["available"] == available - 1_000  # paid out once
    r = await _same_key_twice(stack.client, f"/v1/payouts/{payout_id}/confirm", "k-confirm", {"reference": "TRF-1"})
    assert r.json()["status"] == "paid"
    r = await stack.client.post("/v1/payouts", json={"seller_id": "songket", "amount": 500})
    r = await _same_key_twice(
        stack.client, f"/v1/payouts/{r.json()['payout_id']}/fail", "k-fail", {"reason": "account closed"}
    )
    assert r.json()["status"] == "failed"
    await stack.assert_books_balance()


async def test_a_refused_request_is_replayed_as_refused(stack: Stack) -> None:
    await stack.create_seller("songket")
    r = await _same_key_twice(stack.client, "/v1/orders", "k-bad", order_body("INV-X", [("K", 50_000, 1, "ghost")]))
    assert_problem(r, 422, "unknown_seller")
    await stack.create_seller("ghost")  # the first answer stands for this key
    r = await stack.client.post(
        "/v1/orders", json=order_body("INV-X", [("K", 50_000, 1, "ghost")]), headers={"Idempotency-Key": "k-bad"}
    )
    assert_problem(r, 422, "unknown_seller")
    assert r.headers.get("idempotent-replayed") == "true"


async def test_a_key_whose_first_request_is_still_running_is_in_progress(stack: Stack) -> None:
    await stack.create_seller("songket")
    await stack.create_seller("sambal")
    stack.sandbox.faults.latency_s = 0.3  # DOKU is slow: the first request is still waiting for it
    body = order_body("INV-SLOW-1", ITEMS)
    first = asyncio.create_task(stack.client.post("/v1/orders", json=body, headers={"Idempotency-Key": "k-slow"}))
    conn = await asyncpg.connect(stack.database_url)
    try:
        await poll(
            lambda: conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = 'k-slow'"),
            5.0,
            "the first request never took its key",
        )
    finally:
        await conn.close()
    assert not first.done()
    r = await stack.client.post("/v1/orders", json=body, headers={"Idempotency-Key": "k-slow"})
    assert_problem(r, 409, "idempotency_in_progress")
    assert (await first).status_code == 201
    r = await stack.client.post("/v1/orders", json=body, headers={"Idempotency-Key": "k-slow"})
    assert (r.status_code, r.headers.get("idempotent-replayed")) == (201, "true")
    assert len(stack.sandbox.orders()) == 1


async def test_the_same_key_with_another_body_is_a_conflict_and_changes_nothing(stack: Stack) -> None:
    await _market(stack)
    before = await stack.trial_balance()
    pairs = [
        ("/v1/sellers", {"seller_id": "tenun", "name": "Tenun"}, {"seller_id": "tenun2", "name": "Tenun"}),
        ("/v1/orders", order_body("INV-C-1", ITEMS), order_body("INV-C-2", ITEMS)),
        ("/v1/orders/INV-BASE-1/refunds", {"amount": 1_000, "reason": "a"}, {"amount": 2_000, "reason": "a"}),
        ("/v1/payouts", {"seller_id": "songket", "amount": 1_000}, {"seller_id": "songket", "amount": 1_001}),
    ]
    for n, (path, first, second) in enumerate(pairs):
        key = f"k-conflict-{n}"
        r = await stack.client.post(path, json=first, headers={"Idempotency-Key": key})
        assert r.status_code == 201, r.text
        after_first = await stack.trial_balance()
        r = await stack.client.post(path, json=second, headers={"Idempotency-Key": key})
        assert_problem(r, 409, "idempotency_conflict")
        assert await stack.trial_balance() == after_first
    r = await stack.client.post("/v1/orders/INV-C-1/send", headers={"Idempotency-Key": "k-conflict-0"})
    assert_problem(r, 409, "idempotency_conflict")  # another path is another request
    assert [s["seller_id"] for s in (await stack.client.get("/v1/sellers")).json()["items"]] == [
        "sambal",
        "songket",
        "tenun",
    ]
    assert "INV-C-2" not in {o.invoice_number for o in stack.sandbox.orders()}
    assert before != await stack.trial_balance()  # (the first requests did post)

    report = (await stack.settlement_csv("INV-BASE-1")).encode()
    headers = {"Idempotency-Key": "k-conflict-query", "Content-Type": "text/csv"}
    r = await stack.client.post("/v1/settlements", content=report, headers=headers)
    assert r.status_code == 201, r.text
    r = await stack.client.post("/v1/settlements", params={"mapping": "settled_on="}, content=report, headers=headers)
    assert_problem(r, 409, "idempotency_conflict")  # the query string is part of the request

    other = await stack.new_platform("Toko Lain")
    r = await other.client.post(
        "/v1/sellers", json={"seller_id": "x", "name": "X"}, headers={"Idempotency-Key": "k-conflict-0"}
    )
    assert r.status_code == 201, "keys are per platform"
    r = await stack.client.post("/v1/sellers", json={"seller_id": "y", "name": "Y"}, headers={"Idempotency-Key": ""})
    assert_problem(r, 422, "invalid_request")
