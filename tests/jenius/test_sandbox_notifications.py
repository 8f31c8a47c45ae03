"""The simulated customer and DOKU's notifications, end to end over loopback HTTP: signed as DOKU
signs them, verified by the merchant's check, resent on DOKU's (compressed) schedule, and faulty on
demand."""

from __future__ import annotations

import asyncio
import time

import httpx
import msgspec
import pytest

from jenius.client import JeniusClient, utc_now, verify_notification
from jenius.errors import InvalidSignature
from jenius.sandbox import Sandbox, SandboxError, SandboxMerchant, serve_sandbox
from tests.jenius.conftest import CLIENT_ID, FAST_RETRIES, NOTIFY_PATH, SECRET_KEY, Inbox, Received, payment


def verified(received: Received):
    return verify_notification(
        headers=received.headers,
        body=received.body,
        secret_key=SECRET_KEY,
        notification_path=NOTIFY_PATH,
        now=utc_now(),
    )


@pytest.mark.parametrize(("outcome", "status"), [("approve", "SUCCESS"), ("decline", "FAILED"), ("expire", "EXPIRED")])
async def test_each_customer_outcome_sends_a_signed_notification(
    doku: JeniusClient, sandbox: Sandbox, inbox: Inbox, outcome: str, status: str
) -> None:
    await doku.request_payment(payment("INV-1", amount=75_000), request_id="rid-pay")
    order = await getattr(sandbox, outcome)("INV-1")
    assert order.status == status
    received = await inbox.next()
    notification = verified(received)
    assert received.path == NOTIFY_PATH and received.headers["client-id"] == CLIENT_ID
    assert (notification.order.invoice_number, notification.order.amount) == ("INV-1", 75_000)
    assert (notification.transaction.status, notification.transaction.original_request_id) == (status, "rid-pay")
    assert msgspec.json.decode(received.body)["order"]["amount"] == 75_000  # a number, not a string
    assert (await doku.check_status("INV-1")).transaction.status == status


async def test_an_order_is_concluded_only_once(doku: JeniusClient, sandbox: Sandbox, inbox: Inbox) -> None:
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    for outcome in (sandbox.approve, sandbox.decline, sandbox.expire):
        with pytest.raises(SandboxError) as caught:
            await outcome("INV-1")
        assert (caught.value.code, caught.value.status) == ("order_not_pending", 409)
    await inbox.next()
    assert await inbox.nothing_within(0.1)


async def test_customers_approve_by_themselves_after_the_configured_delay(inbox: Inbox, doku_server) -> None:
    board, url = doku_server
    sandbox = Sandbox(
        merchants=[SandboxMerchant(client_id=CLIENT_ID, secret_key=SECRET_KEY, notification_url=inbox.url)],
        auto_approve_after_s=0.05,
    )
    board.target = sandbox.app
    try:
        async with JeniusClient(client_config_for(url)) as doku:
            started = time.monotonic()
            await doku.request_payment(payment("INV-1"), request_id="rid")
            notification = verified(await inbox.next())
        assert notification.transaction.status == "SUCCESS" and time.monotonic() - started >= 0.05
    finally:
        await sandbox.aclose()


async def test_unanswered_requests_expire_after_the_configured_delay(inbox: Inbox, doku_server) -> None:
    board, url = doku_server
    sandbox = Sandbox(
        merchants=[SandboxMerchant(client_id=CLIENT_ID, secret_key=SECRET_KEY, notification_url=inbox.url)],
        expire_after_s=0.05,
    )
    board.target = sandbox.app
    try:
        async with JeniusClient(client_config_for(url)) as doku:
            await doku.request_payment(payment("INV-1"), request_id="rid")
            assert verified(await inbox.next()).transaction.status == "EXPIRED"
    finally:
        await sandbox.aclose()


def client_config_for(url: str):
    from tests.jenius.conftest import client_config

    return client_config(url)


async def test_a_non_2xx_answer_is_retried_on_the_schedule_with_the_same_request_id(
    doku: JeniusClient, sandbox: Sandbox, inbox: Inbox
) -> None:
    inbox.script = [500, 503]
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    received = [await inbox.next() for _ in range(3)]
    assert len({r.headers["request-id"] for r in received}) == 1
    assert len({r.body for r in received}) == 1
    for r in received:
        verified(r)  # every retry is freshly and correctly signed
    await sandbox.drain()
    (delivery,) = sandbox.deliveries("INV-1")
    assert [a.status_code for a in delivery.attempts] == [500, 503, 200]
    assert [a.outcome for a in delivery.attempts] == ["rejected", "rejected", "delivered"]
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(delivery.attempts, delivery.attempts[1:], strict=False)]
    assert gaps[0] >= FAST_RETRIES[0] and gaps[1] >= FAST_RETRIES[1]


async def test_delivery_gives_up_after_the_last_retry(doku: JeniusClient, sandbox: Sandbox, inbox: Inbox) -> None:
    inbox.script = [500] * 10
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    await sandbox.drain()
    (delivery,) = sandbox.deliveries("INV-1")
    assert len(delivery.attempts) == 1 + len(FAST_RETRIES) and not delivery.delivered
    assert inbox.queue.qsize() == 4 and sandbox.pending_tasks == 0


async def test_a_manual_resend_is_a_new_notification_with_the_same_body(
    doku: JeniusClient, sandbox: Sandbox, inbox: Inbox
) -> None:
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    first = await inbox.next()
    attempt = await sandbox.resend("INV-1")
    second = await inbox.next()
    assert (attempt.outcome, attempt.manual, attempt.status_code) == ("delivered", True, 200)
    assert second.body == first.body and second.headers["request-id"] != first.headers["request-id"]
    assert verified(second) == verified(first)


async def test_resending_before_any_notification_is_not_found(doku: JeniusClient, sandbox: Sandbox) -> None:
    await doku.request_payment(payment("INV-1"), request_id="rid")
    with pytest.raises(SandboxError) as caught:
        await sandbox.resend("INV-1")
    assert caught.value.code == "order_not_found"


async def test_a_dropped_notification_arrives_on_the_next_retry(
    doku: JeniusClient, sandbox: Sandbox, inbox: Inbox
) -> None:
    sandbox.faults.drop_notifications = 1
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    verified(await inbox.next())
    await sandbox.drain()
    assert [a.outcome for a in sandbox.deliveries("INV-1")[0].attempts] == ["dropped", "delivered"]
    assert inbox.queue.empty()


async def test_duplicated_notifications_arrive_twice_byte_for_byte(
    doku: JeniusClient, sandbox: Sandbox, inbox: Inbox
) -> None:
    sandbox.faults.duplicate_notifications = True
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    first, second = await inbox.next(), await inbox.next()
    assert (first.body, first.headers["signature"]) == (second.body, second.headers["signature"])


async def test_reordered_notifications_arrive_newest_first(doku: JeniusClient, sandbox: Sandbox, inbox: Inbox) -> None:
    sandbox.faults.reorder_notifications = True
    await doku.request_payment(payment("INV-A"), request_id="rid-a")
    await doku.request_payment(payment("INV-B"), request_id="rid-b")
    await sandbox.approve("INV-A")
    assert await inbox.nothing_within(0.1)  # held back
    await sandbox.decline("INV-B")
    arrived = [verified(await inbox.next()).order.invoice_number for _ in range(2)]
    assert arrived == ["INV-B", "INV-A"]


async def test_a_held_notification_is_released_by_a_flush(doku: JeniusClient, sandbox: Sandbox, inbox: Inbox) -> None:
    sandbox.faults.reorder_notifications = True
    await doku.request_payment(payment("INV-A"), request_id="rid-a")
    await sandbox.approve("INV-A")
    sandbox.flush_notifications()
    assert verified(await inbox.next()).order.invoice_number == "INV-A"


async def test_badly_signed_notifications_fail_the_merchants_check(
    doku: JeniusClient, sandbox: Sandbox, inbox: Inbox
) -> None:
    sandbox.faults.bad_notification_signature = True
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    with pytest.raises(InvalidSignature):
        verified(await inbox.next())


async def test_a_tampered_notification_fails_the_merchants_check(
    doku: JeniusClient, sandbox: Sandbox, inbox: Inbox
) -> None:
    await doku.request_payment(payment("INV-1", amount=50_000), request_id="rid")
    await sandbox.approve("INV-1")
    received = await inbox.next()
    forged = Received(received.path, received.headers, received.body.replace(b"50000", b"90000"))
    with pytest.raises(InvalidSignature):
        verified(forged)


async def test_a_merchant_without_a_notification_url_gets_none(
    doku: JeniusClient, sandbox: Sandbox, inbox: Inbox
) -> None:
    sandbox.add_merchant(SandboxMerchant(client_id=CLIENT_ID, secret_key=SECRET_KEY, notification_url=None))
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    assert sandbox.deliveries() == () and await inbox.nothing_within(0.1)


async def test_a_full_refund_notifies_when_refund_notifications_are_on(
    doku: JeniusClient, sandbox: Sandbox, inbox: Inbox
) -> None:
    sandbox.notify_refunds = True
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    await inbox.next()
    await doku.refund(invoice_number="INV-1", amount=10_000, reason="x", request_id="rf-1")
    assert await inbox.nothing_within(0.1)  # partial: no notification
    await doku.refund(invoice_number="INV-1", amount=40_000, reason="x", request_id="rf-2")
    assert verified(await inbox.next()).transaction.status == "REFUNDED"


# --- the control API over HTTP ------------------------------------------------------------------------


async def test_the_control_api_drives_the_customer(doku: JeniusClient, doku_url: str, inbox: Inbox) -> None:
    await doku.request_payment(payment("INV/7"), request_id="rid")
    async with httpx.AsyncClient(base_url=doku_url) as http:
        approved = await http.post("/_sandbox/orders/INV/7/approve")
        again = await http.post("/_sandbox/orders/INV/7/decline")
        unknown = await http.post("/_sandbox/orders/INV-404/approve")
        bogus = await http.post("/_sandbox/orders/INV/7/teleport")
        verified(await inbox.next())
        resent = await http.post("/_sandbox/orders/INV/7/resend")
        shown = await http.get("/_sandbox/orders/INV/7")
    assert (approved.status_code, approved.json()["status"]) == (200, "SUCCESS")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "order_not_pending")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "order_not_found")
    assert bogus.status_code == 404
    assert (resent.status_code, resent.json()["outcome"]) == (200, "delivered")
    view = shown.json()
    assert view["order"]["status"] == "SUCCESS" and len(view["deliveries"]) == 2
    assert view["deliveries"][0]["body"]["transaction"]["original_request_id"] == "rid"


async def test_faults_can_be_set_over_http(sandbox: Sandbox, doku_url: str) -> None:
    async with httpx.AsyncClient(base_url=doku_url) as http:
        changed = await http.put("/_sandbox/faults", json={"fail_5xx_next": 2, "duplicate_notifications": True})
        invalid = await http.put("/_sandbox/faults", json={"fail_5xx_next": "lots"})
        shown = await http.get("/_sandbox/faults")
    assert changed.status_code == 200 and invalid.status_code == 400
    assert (sandbox.faults.fail_5xx_next, sandbox.faults.duplicate_notifications) == (2, True)
    assert shown.json()["fail_5xx_next"] == 2


async def test_merchants_can_be_registered_over_http(sandbox: Sandbox, doku_url: str) -> None:
    async with httpx.AsyncClient(base_url=doku_url) as http:
        added = await http.post(
            "/_sandbox/merchants", json={"client_id": "MCH-9", "secret_key": "SK-9", "notification_url": "http://x/n"}
        )
        invalid = await http.post("/_sandbox/merchants", json={"client_id": "MCH-10"})
    assert (added.status_code, invalid.status_code) == (201, 400)
    assert "SK-9" not in added.text
    assert [m.client_id for m in sandbox.merchants] == [CLIENT_ID, "MCH-9"]


# --- shutdown -------------------------------------------------------------------------------------------


async def test_shutdown_cancels_pending_retries_and_hung_answers_quickly(inbox: Inbox) -> None:
    inbox.script = [500]
    sandbox = Sandbox(
        merchants=[SandboxMerchant(client_id=CLIENT_ID, secret_key=SECRET_KEY, notification_url=inbox.url)],
        retry_schedule_s=(3600.0,),
    )
    sandbox.faults.timeout_hang_s = 3600.0
    async with serve_sandbox(sandbox) as url:
        async with JeniusClient(client_config_for(url)) as doku:
            await doku.request_payment(payment("INV-1"), request_id="rid")
            await sandbox.approve("INV-1")
            await inbox.next()  # first attempt answered 500: a retry is now an hour away
            sandbox.faults.timeout_next = 1
            hung = asyncio.create_task(doku.check_status("INV-1"))
            await asyncio.sleep(0.1)
            assert sandbox.pending_tasks == 1
        started = time.monotonic()
    assert time.monotonic() - started < 1.5
    assert sandbox.pending_tasks == 0
    hung.cancel()
    await asyncio.gather(hung, return_exceptions=True)
