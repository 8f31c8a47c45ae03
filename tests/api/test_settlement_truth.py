"""Over real HTTP: refunds by line item, the refund deposit behind DOKU's Refund Service, DOKU
contradicting itself (and an operator resolving it), the reconciliation's views and its truth, and the
OpenAPI document saying how a settlement report is read."""

from __future__ import annotations

from datetime import date, datetime

from tests.api.conftest import CLIENT_ID, WIB, Stack, assert_problem, notification_body, poll

BATIK, KOPI = "batik-sari", "kopi-kita"
CART = [("Batik tulis", 150_000, 2, BATIK), ("Kopi Gayo", 85_000, 1, KOPI)]  # the README's order


async def captured_cart(stack: Stack, invoice: str) -> dict:
    for seller, extra in ((BATIK, {}), (KOPI, {"commission_bps": 300})):
        r = await stack.client.get(f"/v1/sellers/{seller}")
        if r.status_code == 404:
            await stack.create_seller(seller, **extra)
    return await stack.capture(invoice, CART)


async def refund(stack: Stack, invoice: str, body: dict, key: str | None = None):
    headers = {"Idempotency-Key": key} if key else {}
    return await stack.client.post(f"/v1/orders/{invoice}/refunds", json=body, headers=headers)


def wib_day(instant: str) -> date:
    return datetime.fromisoformat(instant).astimezone(WIB).date()


async def reconciliation(stack: Stack, day: date | str, **params: str) -> dict:
    r = await stack.client.get(
        "/v1/reconciliation", params={"period_start": str(day), "period_end": str(day), **params}
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_the_customer_returns_the_coffee_and_only_the_coffee_seller_gives_money_back(stack: Stack) -> None:
    order = await captured_cart(stack, "INV-LINE-1")
    assert {s["seller_id"]: s["net"] for s in order["allocation"]["sellers"]} == {BATIK: 285_000, KOPI: 82_450}

    r = await refund(stack, "INV-LINE-1", {"line_items": [{"name": "Kopi Gayo", "quantity": 1}], "reason": "returned"})

    assert r.status_code == 201, r.text
    done = r.json()
    assert (done["amount"], done["status"], done["line_items"]) == (85_000, "succeeded", [{"index": 1, "quantity": 1}])
    assert done["reversal"] == {"platform": 2_550, "doku_fee": 0, BATIK: 0, KOPI: 82_450}
    assert (await stack.balances(BATIK))["pending"] == 285_000
    assert (await stack.balances(KOPI))["pending"] == 0
    order = await stack.order("INV-LINE-1")
    assert (order["refund_status"], order["refundable_amount"]) == ("partially_refunded", 300_000)

    # The coffee is back already; an item the order does not have; the wrong amount; two ways at once.
    again = await refund(stack, "INV-LINE-1", {"line_items": [{"index": 1, "quantity": 1}], "reason": "again"})
    assert_problem(again, 422, "line_item_quantity_exceeded")
    assert_problem(
        await refund(stack, "INV-LINE-1", {"line_items": [{"name": "Sambal", "quantity": 1}], "reason": "x"}),
        422,
        "unknown_line_item",
    )
    assert_problem(
        await refund(stack, "INV-LINE-1", {"amount": 1, "line_items": [{"index": 0, "quantity": 1}], "reason": "x"}),
        422,
        "amount_mismatch",
    )
    assert_problem(
        await refund(
            stack, "INV-LINE-1", {"line_items": [{"index": 0, "quantity": 1}], "parties": {BATIK: 1}, "reason": "x"}
        ),
        422,
        "invalid_request",
    )
    assert_problem(await refund(stack, "INV-LINE-1", {"reason": "nothing"}), 422, "invalid_request")
    assert_problem(
        await refund(stack, "INV-LINE-1", {"line_items": [{"index": 0, "quantity": 0}], "reason": "x"}),
        422,
        "invalid_request",
    )

    # Both batiks, one at a time, by index: batik-sari gives back exactly its 285 000.
    for _ in range(2):
        r = await refund(stack, "INV-LINE-1", {"line_items": [{"index": 0, "quantity": 1}], "reason": "returned"})
        assert r.status_code == 201, r.text
    assert (await stack.balances(BATIK))["pending"] == 0
    order = await stack.order("INV-LINE-1")
    assert (order["refund_status"], order["refunded_amount"]) == ("refunded", 385_000)
    books = await stack.assert_books_balance()
    assert books["platform:commission"] == -6_775  # commissions all given back; the platform bore DOKU's fee


async def test_a_refund_paid_from_the_deposit_is_in_flight_until_doku_confirms_it(stack: Stack) -> None:
    await captured_cart(stack, "INV-DEP-1")
    r = await stack.client.get("/v1/platform/refund-deposit")
    assert r.json() == {"balance": 0, "in_flight": 0, "recording": 0, "available": 0}
    assert_problem(
        await refund(stack, "INV-DEP-1", {"amount": 85_000, "mode": "deposit", "reason": "r"}),
        422,
        "deposit_insufficient",
    )

    top_up = {"amount": 100_000, "reference": "BCA-DEP-1"}
    headers = {"Idempotency-Key": "top-up-1"}
    r = await stack.client.post("/v1/platform/refund-deposit/top-ups", json=top_up, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["deposit"]["available"] == 100_000
    replay = await stack.client.post("/v1/platform/refund-deposit/top-ups", json=top_up, headers=headers)
    assert (replay.status_code, replay.json()) == (201, r.json())  # the same key: topped up once
    assert_problem(
        await stack.client.post("/v1/platform/refund-deposit/top-ups", json=top_up, headers={"Idempotency-Key": "-"}),
        400,
        "idempotency_key_required",
    )
    assert_problem(
        await refund(stack, "INV-DEP-1", {"amount": 9_999, "mode": "deposit", "reason": "r"}),
        422,
        "deposit_refund_out_of_range",
    )

    r = await refund(
        stack, "INV-DEP-1", {"line_items": [{"name": "Kopi Gayo", "quantity": 1}], "mode": "deposit", "reason": "r"}
    )
    assert r.status_code == 201, r.text
    paid = r.json()
    assert (paid["status"], paid["mode"], paid["cleared_at"]) == ("succeeded", "deposit", None)
    books = await stack.assert_books_balance()
    assert (books["doku:refund_deposit"], books["doku:deposit_refunds_in_flight"]) == (100_000, 85_000)
    deposit = (await stack.client.get("/v1/platform/refund-deposit")).json()
    assert (deposit["in_flight"], deposit["available"]) == (85_000, 15_000)
    rec = await reconciliation(stack, datetime.now(WIB).date())
    assert rec["open_items"]["by_kind"]["deposit_refund_in_flight"] == {"count": 1, "amount": 85_000}
    (in_flight,) = [i for i in rec["open_items"]["items"] if i["kind"] == "deposit_refund_in_flight"]
    assert (in_flight["invoice_number"], in_flight["refund_id"]) == ("INV-DEP-1", paid["refund_id"])
    assert rec["deposit"]["topped_up"] == {"count": 1, "amount": 100_000}
    assert rec["unexplained"]["total"] == 0

    r = await stack.client.post(f"/v1/refunds/{paid['refund_id']}/confirm", json={"reference": "DOKU-RS-77"})
    assert r.status_code == 200, r.text
    assert r.json()["cleared_by"] == "DOKU-RS-77"
    books = await stack.assert_books_balance()
    assert (books["doku:refund_deposit"], books["doku:deposit_refunds_in_flight"]) == (15_000, 0)
    again = await stack.client.post(f"/v1/refunds/{paid['refund_id']}/confirm", json={"reference": "DOKU-RS-77"})
    assert again.status_code == 200 and (await stack.assert_books_balance()) == books
    gateway = await refund(stack, "INV-DEP-1", {"amount": 1_000, "reason": "r"})
    assert_problem(
        await stack.client.post(f"/v1/refunds/{gateway.json()['refund_id']}/confirm", json={}),
        409,
        "refund_not_in_flight",
    )


async def test_a_failed_payment_that_succeeds_after_all_moves_no_money_until_an_operator_captures_it(
    stack: Stack,
) -> None:
    for seller in (BATIK, KOPI):
        await stack.create_seller(seller)
    order = await stack.place_order("INV-CONFLICT-1", CART)
    await stack.sandbox.decline("INV-CONFLICT-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    await stack.wait_for_status("INV-CONFLICT-1", "failed")
    before = await stack.assert_books_balance()

    r = await stack.notify(notification_body("INV-CONFLICT-1", order["amount"], "SUCCESS"))
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "conflict"
    assert (await stack.order("INV-CONFLICT-1"))["status"] == "failed"
    assert await stack.assert_books_balance() == before

    async def checked() -> dict | None:
        found = [e for e in await stack.exceptions() if e["kind"] == "status_conflict"]
        return found[0] if found and found[0]["detail"]["status_checks"] else None

    conflict = await poll(checked, 10, "the status check never reached the exception")
    assert conflict["detail"]["evidence"][0]["doku_status"] == "SUCCESS"
    assert conflict["detail"]["status_checks"][0]["status"] == "FAILED"  # DOKU's own answer, kept as evidence
    assert (await stack.inbox("INV-CONFLICT-1"))[-1]["outcome"] == "conflict"
    rec = await reconciliation(stack, wib_day(order["created_at"]))
    assert rec["clean"] is False and rec["open_exceptions"] == 1

    r = await stack.client.post(
        f"/v1/reconciliation/exceptions/{conflict['exception_id']}/resolve",
        json={"resolution": "the bank shows the money", "action": "capture"},
        headers={"Idempotency-Key": "resolve-1"},
    )
    assert r.status_code == 200, r.text
    order = await stack.order("INV-CONFLICT-1")
    assert (order["status"], order["closed_reason"]) == ("captured", None)
    assert (await stack.assert_books_balance())["doku:clearing"] == 385_000


async def test_a_failed_after_success_keeps_the_order_captured(stack: Stack) -> None:
    order = await captured_cart(stack, "INV-CONFLICT-2")
    before = await stack.assert_books_balance()
    r = await stack.notify(notification_body("INV-CONFLICT-2", order["amount"], "FAILED"))
    assert (r.status_code, r.json()["outcome"]) == (200, "conflict")
    assert (await stack.order("INV-CONFLICT-2"))["status"] == "captured"
    assert await stack.assert_books_balance() == before
    (conflict,) = [e for e in await stack.exceptions() if e["kind"] == "status_conflict"]
    assert (conflict["invoice_number"], conflict["detail"]["order_status"]) == ("INV-CONFLICT-2", "captured")
    r = await stack.client.post(
        f"/v1/reconciliation/exceptions/{conflict['exception_id']}/resolve",
        json={"resolution": "x", "action": "write_off"},
    )
    assert_problem(r, 409, "exception_action_invalid")


async def test_the_day_after_capture_the_capture_date_view_shows_the_orders_settlement(stack: Stack) -> None:
    order = await captured_cart(stack, "INV-VIEW-1")
    report = await stack.settlement_csv("INV-VIEW-1")
    await stack.import_settlement(report)
    captured_on = wib_day(order["captured_at"])

    by_capture = await reconciliation(stack, captured_on)  # the default view
    assert (by_capture["view"], by_capture["settled"]["lines"]) == ("capture_date", 1)
    assert by_capture["settled"]["net"] == 385_000 - 6_775
    by_settlement = await reconciliation(stack, captured_on, view="settlement_date")
    assert (by_settlement["view"], by_settlement["settled"]["lines"]) == ("settlement_date", 0)  # DOKU settles T+2
    assert by_capture["clean"] is True and by_settlement["clean"] is True
    assert_problem(await stack.client.get("/v1/reconciliation", params={"view": "tomorrow"}), 422, "invalid_request")
    csv_text = (await stack.client.get("/v1/reconciliation", params={"format": "csv"})).text
    assert "unexplained now,total,0," in csv_text and "account now,doku:clearing,0," in csv_text


async def test_the_openapi_document_says_how_each_report_row_is_booked(stack: Stack) -> None:
    r = await stack.anon.get("/docs/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    settlements = doc["paths"]["/v1/settlements"]["post"]
    for row_type in ("PAYMENT", "REFUND", "CHARGEBACK", "ADJUSTMENT", "FEE_CORRECTION", "unknown_line_type"):
        assert row_type in settlements["description"], row_type
    for column in ("invoice_number", "gross_amount", "net_amount", "settlement_date", "request_id", "type"):
        assert f"`{column}`" in settlements["description"], column
    refund_in = doc["components"]["schemas"]["RefundIn"]["properties"]
    assert {"line_items", "mode", "parties", "amount"} <= set(refund_in)
    reconcile = doc["paths"]["/v1/reconciliation"]["get"]
    assert "view" in {p["name"] for p in reconcile["parameters"]}
