"""Webhooks over real HTTP, to receivers on loopback that speak the real wire format: endpoints are
registered and deleted, deliveries are signed and retried on the (scaled) schedule, a receiver that
was down gets everything once it is back with each order's events in order, a slow one too, an
endpoint failing for the whole window is disabled and an event says so, and nothing crosses
platforms."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from http.server import HTTPServer

import httpx
import pytest

from ledger.webhooks import signature_header
from tests.api.conftest import CLIENT_ID, Stack, assert_problem, start_stack
from tests.api.test_events_feed import all_events
from tests.readme_receiver import load_readme_receiver
from tests.webhook_receiver import Receiver

ITEMS = [("Tenun ikat", 70_000, 1, "lurik")]
FAST = {"webhooks_allow_loopback": True, "webhook_backoff_scale": 0.001, "webhook_poll_interval_s": 0.05}


@pytest.fixture
async def hooked(database_url: str) -> AsyncIterator[Stack]:
    async for s in start_stack(database_url, **FAST):
        yield s


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def register(stack: Stack, receiver: Receiver, events: list[str] | None = None, client=None) -> dict:
    r = await (client or stack.client).post(
        "/v1/webhook-endpoints", json={"url": receiver.url, "events": events or ["*"]}
    )
    assert r.status_code == 201, r.text
    receiver.secret = r.json()["secret"]
    return r.json()


async def deliveries(stack: Stack, endpoint_id: str, client=None) -> list[dict]:
    r = await (client or stack.client).get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params={"limit": 500})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def chains(events: list[dict]) -> dict[str, list[str]]:
    """Event ids per order, in the order given."""
    found: dict[str, list[str]] = defaultdict(list)
    for event in events:
        found[event["data"]["invoice_number"]].append(event["id"])
    return dict(found)


async def test_an_endpoint_is_registered_listed_and_deleted_and_its_secret_shown_once(hooked: Stack) -> None:
    r = await hooked.client.post(
        "/v1/webhook-endpoints", json={"url": "https://toko.example/hooks", "events": ["order.captured"]}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"id", "url", "events", "secret", "status"}
    assert created["url"] == "https://toko.example/hooks" and created["events"] == ["order.captured"]
    assert created["status"] == "enabled" and created["secret"].startswith("whsec_")

    listed = (await hooked.client.get("/v1/webhook-endpoints")).json()["data"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert created["secret"] not in (await hooked.client.get("/v1/webhook-endpoints")).text
    one = (await hooked.client.get(f"/v1/webhook-endpoints/{created['id']}")).json()
    assert one == listed[0] and "secret" not in one

    r = await hooked.client.delete(f"/v1/webhook-endpoints/{created['id']}")
    assert r.status_code == 204, r.text
    assert (await hooked.client.get("/v1/webhook-endpoints")).json()["data"] == []
    for r in (
        await hooked.client.get(f"/v1/webhook-endpoints/{created['id']}"),
        await hooked.client.delete(f"/v1/webhook-endpoints/{created['id']}"),
        await hooked.client.get(f"/v1/webhook-endpoints/{created['id']}/deliveries"),
    ):
        assert_problem(r, 404, "webhook_endpoint_not_found")


async def test_bad_endpoints_are_refused_precisely(stack: Stack) -> None:
    """The default service refuses loopback URLs (SPLITLEDGER_WEBHOOKS_ALLOW_LOOPBACK is off)."""
    for body, status, code in (
        ({"url": "http://127.0.0.1:8088/hooks", "events": ["*"]}, 422, "invalid_webhook_url"),
        ({"url": "https://localhost/hooks", "events": ["*"]}, 422, "invalid_webhook_url"),
        ({"url": "http://toko.example/hooks", "events": ["*"]}, 422, "invalid_webhook_url"),
        ({"url": "https://169.254.169.254/latest", "events": ["*"]}, 422, "invalid_webhook_url"),
        ({"url": "toko.example", "events": ["*"]}, 422, "invalid_webhook_url"),
        ({"url": "https://toko.example/h", "events": ["order.shipped"]}, 422, "unknown_event_type"),
        ({"url": "https://toko.example/h", "events": ["*", "order.created"]}, 422, "unknown_event_type"),
        ({"url": "https://toko.example/h", "events": []}, 422, "invalid_request"),
        ({"url": "https://toko.example/h"}, 422, "invalid_request"),
        ({"url": "https://toko.example/h", "events": ["*"], "secret": "mine"}, 422, "unknown_field"),
    ):
        assert_problem(await stack.client.post("/v1/webhook-endpoints", json=body), status, code)
    assert (await stack.client.get("/v1/webhook-endpoints")).json()["data"] == []


async def test_deliveries_are_signed_and_the_readme_receiver_accepts_them(hooked: Stack) -> None:
    """The README's ten-line receiver, run for real: it verifies every delivery, and refuses the same
    delivery tampered with or replayed later."""
    module = load_readme_receiver("")
    server = HTTPServer(("127.0.0.1", 0), module.Receiver)
    server.RequestHandlerClass.log_message = lambda *args: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
        r = await hooked.client.post("/v1/webhook-endpoints", json={"url": url, "events": ["*"]})
        endpoint = r.json()
        module.Receiver.do_POST.__globals__["SECRET"] = endpoint["secret"].encode()
        await hooked.create_seller("lurik")
        await hooked.capture("INV-SIGNED-1", ITEMS)

        async def both_delivered() -> list[dict]:
            found = await deliveries(hooked, endpoint["id"])
            return found if len(found) == 2 and all(d["status"] == "delivered" for d in found) else []

        found = await poll_until(both_delivered, 10, "the README receiver never accepted both deliveries")
        assert {d["last_response_status"] for d in found} == {204}  # its verify() said yes
        assert {d["event_type"] for d in found} == {"order.created", "order.captured"}

        event = (await all_events(hooked.client))[0]
        body = (await hooked.client.get(f"/v1/events/{event['id']}")).content
        async with httpx.AsyncClient(trust_env=False) as raw:
            now = int(time.time())
            good = signature_header(endpoint["secret"], now, body)
            assert (await raw.post(url, content=body, headers={"Splitledger-Signature": good})).status_code == 204
            tampered = body.replace(b"INV-SIGNED-1", b"INV-SIGNED-9")
            r = await raw.post(url, content=tampered, headers={"Splitledger-Signature": good})
            assert r.status_code == 400
            replayed = signature_header(endpoint["secret"], now - 600, body)
            r = await raw.post(url, content=body, headers={"Splitledger-Signature": replayed})
            assert r.status_code == 400
            other = signature_header("whsec_someone-else", now, body)
            assert (await raw.post(url, content=body, headers={"Splitledger-Signature": other})).status_code == 400
    finally:
        server.shutdown()
        server.server_close()


async def test_a_delivery_carries_the_event_exactly_as_the_feed_shows_it(hooked: Stack, receiver: Receiver) -> None:
    endpoint = await register(hooked, receiver, ["order.captured"])
    await hooked.create_seller("lurik")
    await hooked.capture("INV-BYTES-1", ITEMS)
    await receiver.wait_until(lambda: len(receiver.delivered()) == 1)
    (got,) = receiver.delivered()
    (event,) = await all_events(hooked.client, type="order.captured")
    assert got.body == (await hooked.client.get(f"/v1/events/{event['id']}")).content
    assert got.headers["content-type"] == "application/json"
    assert receiver.signed_correctly(got, int(time.time()))
    stamp = int(got.headers["splitledger-signature"].split(",")[0].removeprefix("t="))
    assert abs(stamp - time.time()) < 30
    assert got.event["type"] == "order.captured"  # only what the endpoint subscribed to
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1
    (delivery,) = await deliveries(hooked, endpoint["id"])
    assert (delivery["event_id"], delivery["status"], delivery["attempt_count"]) == (event["id"], "delivered", 1)


async def test_a_receiver_answering_500_three_times_then_200_gets_it_once_more(
    hooked: Stack, receiver: Receiver
) -> None:
    endpoint = await register(hooked, receiver, ["order.created"])
    receiver.script = [500, 500, 500]
    await hooked.create_seller("lurik")
    await hooked.place_order("INV-500-1", ITEMS)
    await receiver.wait_until(lambda: len(receiver.delivered()) == 1, message="never delivered")
    await asyncio.sleep(0.5)  # and nothing after the 2xx
    assert [r.status for r in receiver.requests] == [500, 500, 500, 200]
    assert len({r.body for r in receiver.requests}) == 1  # the same bytes every time
    assert len({r.headers["splitledger-event-id"] for r in receiver.requests}) == 1
    (delivery,) = await deliveries(hooked, endpoint["id"])
    assert delivery["status"] == "delivered" and delivery["attempt_count"] == 4
    assert [a["response_status"] for a in delivery["attempts"]] == [500, 500, 500, 200]
    assert [a["attempt"] for a in delivery["attempts"]] == [1, 2, 3, 4]


async def test_a_receiver_down_for_a_while_gets_everything_once_back_each_order_in_order(
    hooked: Stack, receiver: Receiver
) -> None:
    endpoint = await register(hooked, receiver)
    await receiver.stop()  # connection refused from now on
    await hooked.create_seller("lurik")
    invoices = [f"INV-DOWN-{i}" for i in range(4)]
    for invoice in invoices:
        await hooked.capture(invoice, ITEMS)
        r = await hooked.client.post(f"/v1/orders/{invoice}/refunds", json={"amount": 10_000, "reason": "x"})
        assert r.json()["status"] == "succeeded"
    await asyncio.sleep(0.8)  # several attempts fail meanwhile
    failing = await deliveries(hooked, endpoint["id"])
    assert {d["status"] for d in failing} == {"pending"}
    assert max(d["attempt_count"] for d in failing) >= 2
    assert any("Connect" in (d["last_error"] or "") for d in failing)

    await receiver.start()  # back, same URL
    feed = await all_events(hooked.client)
    assert len(feed) == 4 * len(invoices)
    await receiver.wait_until(lambda: len(receiver.delivered()) == len(feed), 20, "not everything arrived")
    got = receiver.delivered_events()
    assert sorted(e["id"] for e in got) == sorted(e["id"] for e in feed)
    assert chains(got) == chains(feed)  # each order's events in the order they happened

    async def all_recorded() -> bool:  # the receiver answers before the relay records the answer
        return {d["status"] for d in await deliveries(hooked, endpoint["id"])} == {"delivered"}

    await poll_until(all_recorded, 10, "deliveries not recorded as delivered")


async def test_a_slow_receiver_gets_each_orders_events_in_order_while_orders_overlap(
    hooked: Stack, receiver: Receiver
) -> None:
    await register(hooked, receiver)
    # slowest on each order's first event: a relay that did not wait for it would deliver the next one first
    receiver.delay_for = lambda event: 0.4 if event["type"] == "order.created" else 0.05
    await hooked.create_seller("lurik")
    invoices = [f"INV-SLOW-{i}" for i in range(4)]
    await asyncio.gather(*(hooked.capture(invoice, ITEMS) for invoice in invoices))
    for invoice in invoices:
        await hooked.client.post(f"/v1/orders/{invoice}/refunds", json={"amount": 10_000, "reason": "x"})
    feed = await all_events(hooked.client)
    await receiver.wait_until(lambda: len(receiver.delivered()) == len(feed), 30, "not everything arrived")
    assert chains(receiver.delivered_events()) == chains(feed)
    assert receiver.max_inflight > 1  # other orders were not held up behind one order's slow delivery


@pytest.fixture
async def short_window(database_url: str) -> AsyncIterator[Stack]:
    """3 days scaled by 1e-5: the whole retry schedule takes about 2.6 s."""
    async for s in start_stack(database_url, **{**FAST, "webhook_backoff_scale": 0.00001}):
        yield s


async def test_an_endpoint_failing_for_the_whole_window_is_disabled_and_an_event_says_so(
    short_window: Stack, receiver: Receiver
) -> None:
    stack = short_window
    healthy = Receiver()
    await healthy.start()
    try:
        endpoint = await register(stack, receiver, ["order.created"])
        await register(stack, healthy, ["webhook_endpoint.disabled"])
        receiver.status = 503
        await stack.create_seller("lurik")
        await stack.place_order("INV-DEAD-1", ITEMS)

        async def disabled() -> dict | None:
            found = (await stack.client.get(f"/v1/webhook-endpoints/{endpoint['id']}")).json()
            return found if found["status"] == "disabled" else None

        found = await poll_until(disabled, 20, "the endpoint was never disabled")
        assert found["disabled_reason"] and found["disabled_at"]
        (delivery,) = await deliveries(stack, endpoint["id"])
        assert delivery["status"] == "failed" and delivery["attempt_count"] >= 10
        assert {a["response_status"] for a in delivery["attempts"]} == {503}
        assert delivery["attempt_count"] == len(receiver.requests)

        (event,) = await all_events(stack.client, type="webhook_endpoint.disabled")
        assert event["data"]["id"] == endpoint["id"] and event["data"]["status"] == "disabled"
        assert "secret" not in event["data"]
        await healthy.wait_until(lambda: len(healthy.delivered()) == 1)
        assert healthy.delivered_events()[0]["id"] == event["id"]

        attempts = len(receiver.requests)
        await stack.place_order("INV-DEAD-2", ITEMS)  # a disabled endpoint receives nothing more
        await asyncio.sleep(0.3)
        assert len(receiver.requests) == attempts
        assert len(await deliveries(stack, endpoint["id"])) == 1
    finally:
        await healthy.stop()


async def test_an_event_is_redelivered_on_request(hooked: Stack, receiver: Receiver) -> None:
    endpoint = await register(hooked, receiver, ["order.created"])
    await hooked.create_seller("lurik")
    await hooked.place_order("INV-AGAIN-1", ITEMS)
    await receiver.wait_until(lambda: len(receiver.delivered()) == 1)
    (event,) = await all_events(hooked.client)

    r = await hooked.client.post(f"/v1/events/{event['id']}/redeliver")
    assert r.status_code == 202, r.text
    (delivery,) = r.json()["deliveries"]
    assert r.json()["event_id"] == event["id"] and delivery["endpoint_id"] == endpoint["id"]
    await receiver.wait_until(lambda: len(receiver.delivered()) == 2)
    first, again = receiver.delivered()
    assert first.body == again.body

    async def both_recorded() -> list[dict]:
        log = await deliveries(hooked, endpoint["id"])
        return log if [d["status"] for d in log] == ["delivered", "delivered"] else []

    log = await poll_until(both_recorded, 10, "the redelivery was not recorded")
    assert log[0]["id"] == delivery["id"] and log[0]["event_id"] == log[1]["event_id"] == event["id"]

    r = await hooked.client.post(f"/v1/events/{event['id']}/redeliver", json={"endpoint_id": endpoint["id"]})
    assert r.status_code == 202 and len(r.json()["deliveries"]) == 1
    await receiver.wait_until(lambda: len(receiver.delivered()) == 3)
    assert_problem(
        await hooked.client.post(f"/v1/events/{event['id']}/redeliver", json={"endpoint_id": "we-nope"}),
        404,
        "webhook_endpoint_not_found",
    )
    unknown = await hooked.client.post("/v1/events/evt_000000000000000000000000/redeliver")
    assert_problem(unknown, 404, "event_not_found")
    assert_problem(
        await hooked.client.post(f"/v1/events/{event['id']}/redeliver", json={"endpoint": "x"}), 422, "unknown_field"
    )


async def test_nothing_crosses_platforms(hooked: Stack, receiver: Receiver) -> None:
    mine = await register(hooked, receiver)
    theirs_receiver = Receiver()
    await theirs_receiver.start()
    try:
        other = await hooked.new_platform("Toko Lain")
        theirs = await register(hooked, theirs_receiver, client=other.client)
        await hooked.create_seller("lurik")
        await hooked.capture("INV-MINE-1", ITEMS)
        await receiver.wait_until(lambda: len(receiver.delivered()) == 2)
        await asyncio.sleep(0.3)
        assert theirs_receiver.requests == []
        assert {e["platform_id"] for e in receiver.delivered_events()} == {hooked.platform_id}
        assert [e["id"] for e in (await other.client.get("/v1/webhook-endpoints")).json()["data"]] == [theirs["id"]]
        for r in (
            await other.client.get(f"/v1/webhook-endpoints/{mine['id']}"),
            await other.client.get(f"/v1/webhook-endpoints/{mine['id']}/deliveries"),
            await other.client.delete(f"/v1/webhook-endpoints/{mine['id']}"),
        ):
            assert_problem(r, 404, "webhook_endpoint_not_found")
        event = (await all_events(hooked.client))[0]
        assert_problem(await other.client.post(f"/v1/events/{event['id']}/redeliver"), 404, "event_not_found")
        assert (await hooked.client.get(f"/v1/webhook-endpoints/{mine['id']}")).json()["status"] == "enabled"
    finally:
        await theirs_receiver.stop()


async def test_an_endpoint_gets_only_events_after_it_was_created_and_none_after_it_was_deleted(
    hooked: Stack, receiver: Receiver
) -> None:
    await hooked.create_seller("lurik")
    await hooked.place_order("INV-BEFORE-1", ITEMS)
    endpoint = await register(hooked, receiver, ["order.created"])
    await hooked.place_order("INV-AFTER-1", ITEMS)
    await receiver.wait_until(lambda: len(receiver.delivered()) == 1)
    assert receiver.delivered_events()[0]["data"]["invoice_number"] == "INV-AFTER-1"
    receiver.status = 500
    await hooked.place_order("INV-AFTER-2", ITEMS)
    await receiver.wait_until(lambda: len(receiver.requests) >= 2)
    assert (await hooked.client.delete(f"/v1/webhook-endpoints/{endpoint['id']}")).status_code == 204
    seen = len(receiver.requests)
    await hooked.place_order("INV-AFTER-3", ITEMS)
    await asyncio.sleep(0.5)
    assert len(receiver.requests) <= seen + 1  # at most the attempt that was already in flight


async def poll_until(check, timeout_s: float, message: str):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.05)


async def test_events_for_an_order_captured_through_the_batcher_reach_the_endpoint(
    hooked: Stack, receiver: Receiver
) -> None:
    """The group-committed capture path writes its events in its batch; they are delivered like any."""
    await register(hooked, receiver, ["order.captured"])
    await hooked.create_seller("lurik")
    invoices = [f"INV-BATCH-{i:02d}" for i in range(12)]
    for invoice in invoices:
        await hooked.place_order(invoice, ITEMS)
    await asyncio.gather(*(hooked.sandbox.approve(i, client_id=CLIENT_ID) for i in invoices))
    await hooked.sandbox.drain()
    await receiver.wait_until(lambda: len(receiver.delivered()) == len(invoices), 20)
    assert sorted(e["data"]["invoice_number"] for e in receiver.delivered_events()) == invoices
    assert all(e["data"]["status"] == "captured" for e in receiver.delivered_events())
