"""When DOKU cannot be reached or stays silent: an order is kept ``send_failed`` and resent with
the same Request-Id; a refund DOKU did not confirm stays ``requested`` and is retried with the same
Request-Id; a refund DOKU refuses is ``failed`` and releases its reservation; the status check
captures (or closes) an order whose notification never arrived."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from tests.api.conftest import (
    CLIENT_ID,
    SECRET_KEY,
    Stack,
    assert_problem,
    notification_body,
    order_body,
    start_stack,
)

ITEMS = [("Lurik", 70_000, 1, "lurik")]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_doku_answering_5xx_keeps_the_order_send_failed_then_send_delivers_it(stack: Stack) -> None:
    await stack.create_seller("lurik")
    stack.sandbox.faults.fail_5xx_next = 3  # every attempt the client makes for this request
    r = await stack.client.post("/v1/orders", json=order_body("INV-5XX-1", ITEMS))
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "send_failed"
    assert order["doku_error"]["code"] == "unavailable"
    assert stack.sandbox.faults.fail_5xx_next == 0
    assert stack.sandbox.orders() == ()
    listed = (await stack.client.get("/v1/orders", params={"status": "send_failed"})).json()["items"]
    assert [o["invoice_number"] for o in listed] == ["INV-5XX-1"]
    assert set((await stack.assert_books_balance()).values()) == {0}

    r = await stack.client.post("/v1/orders/INV-5XX-1/send")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    assert r.json()["doku_request_id"] == order["doku_request_id"]
    at_doku = stack.sandbox.order("INV-5XX-1", client_id=CLIENT_ID)
    assert (at_doku.request_id, at_doku.amount) == (order["doku_request_id"], 70_000)

    r = await stack.client.post("/v1/orders/INV-5XX-1/send")  # nothing left to send: unchanged
    assert r.json()["status"] == "pending"
    assert len(stack.sandbox.orders()) == 1
    await stack.sandbox.approve("INV-5XX-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    await stack.wait_for_status("INV-5XX-1", "captured")
    assert (await stack.assert_books_balance())["doku:clearing"] == 70_000


async def test_doku_on_a_closed_port_then_back_the_same_request_id_goes_through(stack: Stack) -> None:
    await stack.create_seller("lurik")
    gateway = {
        "client_id": CLIENT_ID,
        "secret_key": SECRET_KEY,
        "fee_bps": 150,
        "fee_fixed": 1_000,
        "commission_bps": 500,
    }
    closed = f"http://127.0.0.1:{_closed_port()}"
    r = await stack.client.put("/v1/platform/gateway", json={**gateway, "base_url": closed})
    assert r.status_code == 200
    r = await stack.client.post("/v1/orders", json=order_body("INV-DOWN-1", ITEMS))
    assert r.status_code == 201 and r.json()["status"] == "send_failed"
    request_id = r.json()["doku_request_id"]
    r = await stack.client.post("/v1/orders/INV-DOWN-1/status-check")  # an unsent order is (re)sent, not asked about
    assert r.json()["status"] == "send_failed"

    r = await stack.client.put("/v1/platform/gateway", json=gateway)  # DOKU is back (the default base URL)
    assert r.status_code == 200
    r = await stack.client.post("/v1/orders/INV-DOWN-1/send")
    assert (r.json()["status"], r.json()["doku_request_id"]) == ("pending", request_id)
    assert stack.sandbox.order("INV-DOWN-1", client_id=CLIENT_ID).request_id == request_id
    assert set((await stack.assert_books_balance()).values()) == {0}


async def test_a_refund_doku_did_not_confirm_stays_requested_and_retry_completes_it(stack: Stack) -> None:
    await stack.create_seller("lurik")
    await stack.capture("INV-RF-5XX", ITEMS)
    captured = await stack.assert_books_balance()
    stack.sandbox.faults.fail_5xx_next = 3
    r = await stack.client.post("/v1/orders/INV-RF-5XX/refunds", json={"amount": 20_000, "reason": "rusak"})
    assert r.status_code == 201, r.text
    refund = r.json()
    assert (refund["status"], refund["entry_id"]) == ("requested", None)
    assert await stack.assert_books_balance() == captured  # nothing posted until DOKU says yes
    order = await stack.order("INV-RF-5XX")
    assert (order["refunded_amount"], order["refundable_amount"]) == (0, 50_000)  # but reserved
    r = await stack.client.post("/v1/orders/INV-RF-5XX/refunds", json={"amount": 50_001, "reason": "too much"})
    assert_problem(r, 422, "refund_exceeds_captured")

    r = await stack.client.post(f"/v1/refunds/{refund['refund_id']}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    (at_doku,) = stack.sandbox.order("INV-RF-5XX", client_id=CLIENT_ID).refunds
    assert (at_doku.request_id, at_doku.amount) == (refund["refund_id"], 20_000)
    books = await stack.assert_books_balance()
    assert books["doku:clearing"] == 70_000 - 20_000
    r = await stack.client.post(f"/v1/refunds/{refund['refund_id']}/retry")  # done: nothing more happens
    assert r.json()["status"] == "succeeded"
    assert len(stack.sandbox.order("INV-RF-5XX", client_id=CLIENT_ID).refunds) == 1
    assert await stack.accounts() == books


async def test_a_refund_doku_refuses_fails_and_releases_its_reservation(stack: Stack) -> None:
    """DOKU expired the order, but a late SUCCESS came and an operator captured it here: DOKU refuses
    to refund it."""
    await stack.create_seller("lurik")
    await stack.place_order("INV-RF-NO", ITEMS)
    await stack.sandbox.expire("INV-RF-NO", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    await stack.wait_for_status("INV-RF-NO", "expired")
    r = await stack.notify(notification_body("INV-RF-NO", 70_000))
    assert r.json()["outcome"] == "conflict"
    (conflict,) = [e for e in await stack.exceptions() if e["kind"] == "status_conflict"]
    r = await stack.client.post(
        f"/v1/reconciliation/exceptions/{conflict['exception_id']}/resolve",
        json={"resolution": "captured by hand", "action": "capture"},
    )
    assert r.status_code == 200, r.text
    assert (await stack.order("INV-RF-NO"))["status"] == "captured"
    books = await stack.assert_books_balance()

    r = await stack.client.post("/v1/orders/INV-RF-NO/refunds", json={"amount": 70_000, "reason": "batal"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "failed"
    assert r.json()["failure"]["doku_code"] == "order_not_refundable"
    assert await stack.accounts() == books
    order = await stack.order("INV-RF-NO")
    assert (order["refunded_amount"], order["refundable_amount"]) == (0, 70_000)


async def test_status_check_captures_an_approved_order_whose_notifications_were_dropped(stack: Stack) -> None:
    await stack.create_seller("lurik")
    await stack.place_order("INV-DROP-1", ITEMS)
    stack.sandbox.faults.drop_notifications = 4  # the first attempt and all three retries
    await stack.sandbox.approve("INV-DROP-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    (delivery,) = stack.sandbox.deliveries("INV-DROP-1")
    assert [a.outcome for a in delivery.attempts] == ["dropped"] * 4
    assert (await stack.order("INV-DROP-1"))["status"] == "pending"
    assert await stack.inbox() == []

    r = await stack.client.post("/v1/orders/INV-DROP-1/status-check")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "captured"
    books = await stack.assert_books_balance()
    assert books["doku:clearing"] == 70_000
    assert books["seller:lurik:pending"] == 70_000 - 3_500
    r = await stack.client.post("/v1/orders/INV-DROP-1/status-check")  # asked again: captured once
    assert r.json()["status"] == "captured"
    assert await stack.accounts() == books


async def test_status_check_leaves_a_pending_order_pending_and_closes_a_declined_one(stack: Stack) -> None:
    await stack.create_seller("lurik")
    await stack.place_order("INV-WAIT-1", ITEMS)
    await stack.place_order("INV-DECL-1", ITEMS)
    r = await stack.client.post("/v1/orders/INV-WAIT-1/status-check")
    assert r.json()["status"] == "pending"
    stack.sandbox.faults.drop_notifications = 4
    await stack.sandbox.decline("INV-DECL-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    r = await stack.client.post("/v1/orders/INV-DECL-1/status-check")
    assert (r.json()["status"], r.json()["closed_reason"]) == ("failed", "doku_failed")
    assert set((await stack.assert_books_balance()).values()) == {0}
    r = await stack.client.post("/v1/orders/INV-DECL-1/refunds", json={"amount": 1_000, "reason": "x"})
    assert_problem(r, 409, "order_not_captured")


@pytest.fixture
async def impatient_stack(database_url: str) -> AsyncIterator[Stack]:
    """The stack with a service that gives up on a DOKU answer after 0.3 s."""
    async for s in start_stack(database_url, doku_timeout_s=0.3):
        yield s


async def test_an_answer_lost_after_doku_acted_is_recovered_by_the_retry_never_doubled(impatient_stack: Stack) -> None:
    stack = impatient_stack
    await stack.create_seller("lurik")
    stack.sandbox.faults.timeout_hang_s = 5.0
    stack.sandbox.faults.timeout_next = 1  # DOKU creates the payment request, then its answer is lost
    r = await stack.client.post("/v1/orders", json=order_body("INV-LOST-1", ITEMS))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"  # the retry met DOKU's 409 with the first answer: already done
    assert [o.request_id for o in stack.sandbox.orders()] == [r.json()["doku_request_id"]]

    await stack.sandbox.approve("INV-LOST-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    await stack.wait_for_status("INV-LOST-1", "captured")
    stack.sandbox.faults.timeout_next = 1  # DOKU refunds, then its answer is lost
    r = await stack.client.post("/v1/orders/INV-LOST-1/refunds", json={"amount": 30_000, "reason": "lost answer"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "succeeded"
    assert [x.amount for x in stack.sandbox.order("INV-LOST-1", client_id=CLIENT_ID).refunds] == [30_000]
    assert (await stack.assert_books_balance())["doku:clearing"] == 70_000 - 30_000
