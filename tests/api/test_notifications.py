"""DOKU's notifications over real HTTP: duplicates and resends capture once, late FAILED/EXPIRED
never un-capture, SUCCESS after EXPIRED captures, and every bad delivery (forged, unknown
Client-Id, malformed, mismatched amount, unknown invoice) is answered with its code, kept in the
inbox where it has a platform, and changes no balance."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from jenius import signing
from tests.api.conftest import (
    CLIENT_ID,
    NOTIFICATION_PATH,
    SECRET_KEY,
    Stack,
    assert_problem,
    notification_body,
    notification_headers,
    poll,
)

ITEMS = [("Tenun ikat", 60_000, 1, "tenun")]
AMOUNT = 60_000


async def _captured_books(stack: Stack, invoice: str) -> dict[str, int]:
    await stack.create_seller("tenun")
    await stack.capture(invoice, ITEMS)
    return await stack.assert_books_balance()


def _assert_nothing_posted(books_before: dict[str, int], books_after: dict[str, int]) -> None:
    assert books_after == books_before, "a later delivery must not post"


async def test_duplicated_deliveries_capture_once(stack: Stack) -> None:
    await stack.create_seller("tenun")
    stack.sandbox.faults.duplicate_notifications = True  # every attempt is sent twice, same bytes
    await stack.place_order("INV-DUP-1", ITEMS)
    await stack.sandbox.approve("INV-DUP-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    order = await stack.wait_for_status("INV-DUP-1", "captured")
    inbox = await stack.inbox("INV-DUP-1")
    assert sorted(n["outcome"] for n in inbox) == ["captured", "duplicate"]
    books = await stack.assert_books_balance()
    assert books["doku:clearing"] == AMOUNT
    entry = (await stack.client.get(order["links"]["capture_entry"])).json()
    assert entry["idempotency_key"] == "capture:INV-DUP-1"


async def test_a_manual_resend_is_acknowledged_and_captures_nothing_more(stack: Stack) -> None:
    books = await _captured_books(stack, "INV-RESEND-1")
    r = await stack.sandbox_post("/_sandbox/orders/INV-RESEND-1/resend")
    assert r.status_code == 200, r.text
    assert (r.json()["outcome"], r.json()["status_code"]) == ("delivered", 200)
    r = await stack.sandbox_post("/_sandbox/orders/INV-RESEND-1/resend")
    assert r.json()["outcome"] == "delivered"
    inbox = await stack.inbox("INV-RESEND-1")
    assert [n["outcome"] for n in inbox] == ["captured", "duplicate", "duplicate"]
    assert len({n["request_id"] for n in inbox}) == 3  # a resend is a new notification with the same body
    _assert_nothing_posted(books, await stack.assert_books_balance())


async def test_failed_or_expired_after_success_does_not_uncapture(stack: Stack) -> None:
    books = await _captured_books(stack, "INV-LATE-1")
    for status in ("FAILED", "EXPIRED", "TIMEOUT"):
        r = await stack.notify(notification_body("INV-LATE-1", AMOUNT, status))
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "conflict"  # a contradiction: kept as evidence, no money moves
    order = await stack.order("INV-LATE-1")
    assert (order["status"], order["closed_reason"]) == ("captured", None)
    assert order["refundable_amount"] == AMOUNT
    _assert_nothing_posted(books, await stack.assert_books_balance())
    (conflict,) = await stack.exceptions()
    assert conflict["kind"] == "status_conflict"
    assert [e["doku_status"] for e in conflict["detail"]["evidence"]] == ["FAILED", "EXPIRED", "TIMEOUT"]


async def test_success_after_expired_captures_only_when_an_operator_says_the_money_moved(stack: Stack) -> None:
    await stack.create_seller("tenun")
    order = await stack.place_order("INV-REVIVE-1", ITEMS)
    await stack.sandbox.expire("INV-REVIVE-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    expired = await stack.wait_for_status("INV-REVIVE-1", "expired")
    assert expired["closed_reason"] == "doku_expired"
    assert set((await stack.assert_books_balance()).values()) == {0}

    body = notification_body("INV-REVIVE-1", AMOUNT, "SUCCESS", original_request_id=order["doku_request_id"])
    r = await stack.notify(body)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "conflict"
    assert (await stack.order("INV-REVIVE-1"))["status"] == "expired"
    assert set((await stack.assert_books_balance()).values()) == {0}

    (conflict,) = await stack.exceptions()
    r = await stack.client.post(
        f"/v1/reconciliation/exceptions/{conflict['exception_id']}/resolve",
        json={"resolution": "the customer paid late", "action": "capture"},
    )
    assert r.status_code == 200, r.text
    revived = await stack.order("INV-REVIVE-1")
    assert (revived["status"], revived["closed_reason"]) == ("captured", None)
    books = await stack.assert_books_balance()
    assert books["doku:clearing"] == AMOUNT
    assert books["seller:tenun:pending"] == AMOUNT - 3_000  # 5 % commission on 60 000


async def test_reordered_deliveries_newest_first_end_in_the_right_state(stack: Stack) -> None:
    """The sandbox holds one notification and sends the next before it: the later order's SUCCESS
    arrives first, the earlier order's EXPIRED second; each order ends where DOKU says."""
    await stack.create_seller("tenun")
    stack.sandbox.faults.reorder_notifications = True
    await stack.place_order("INV-ORD-A", ITEMS)
    await stack.place_order("INV-ORD-B", ITEMS)
    await stack.sandbox.expire("INV-ORD-A", client_id=CLIENT_ID)  # held
    await stack.sandbox.approve("INV-ORD-B", client_id=CLIENT_ID)  # sent, then the held one
    await stack.sandbox.drain()
    await stack.wait_for_status("INV-ORD-B", "captured")
    await stack.wait_for_status("INV-ORD-A", "expired")
    inbox = await stack.inbox()
    assert [(n["invoice_number"], n["transaction_status"]) for n in inbox] == [
        ("INV-ORD-B", "SUCCESS"),
        ("INV-ORD-A", "EXPIRED"),
    ]
    books = await stack.assert_books_balance()
    assert books["doku:clearing"] == AMOUNT


async def test_forged_signature_is_refused_kept_and_posts_nothing(stack: Stack) -> None:
    await stack.create_seller("tenun")
    await stack.place_order("INV-FORGED-1", ITEMS)
    before = await stack.accounts()

    body = notification_body("INV-FORGED-1", AMOUNT)
    r = await stack.notify(body, secret_key="SK-not-the-merchants")
    assert_problem(r, 401, "invalid_signature")
    tampered = body.replace(b"60000", b"6000")  # signed by the merchant's key, changed on the way
    r = await stack.anon.post(NOTIFICATION_PATH, content=tampered, headers=notification_headers(body))
    assert_problem(r, 401, "invalid_signature")
    r = await stack.anon.post(
        NOTIFICATION_PATH,
        content=body,
        headers={
            "Client-Id": CLIENT_ID,
            "Request-Id": "x",
            "Request-Timestamp": "2024-01-01T00:00:00Z",
            "Signature": "HMACSHA256=AAAA",
        },
    )
    assert_problem(r, 401, "invalid_signature")
    r = await stack.anon.post(NOTIFICATION_PATH, content=body, headers={"Client-Id": CLIENT_ID})  # no signature
    assert_problem(r, 401, "invalid_signature")
    assert (await stack.order("INV-FORGED-1"))["status"] == "pending"
    assert await stack.accounts() == before

    forged = [n for n in await stack.inbox() if n["outcome"] == "invalid_signature"]
    assert len(forged) == 4
    assert all(n["invoice_number"] is None and n["amount"] is None for n in forged), "a forged body is not trusted"
    assert bytes(forged[0]["body"]) == body  # kept byte for byte, for the operator

    r = await stack.notify(body)  # the same body signed with the merchant's key captures
    assert r.status_code == 200 and r.json()["outcome"] == "captured"


async def test_badly_signed_deliveries_from_doku_capture_nothing_until_a_good_resend(stack: Stack) -> None:
    await stack.create_seller("tenun")
    await stack.place_order("INV-BADSIG-1", ITEMS)
    stack.sandbox.faults.bad_notification_signature = True
    await stack.sandbox.approve("INV-BADSIG-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()  # the first attempt and the three retries, all refused with 401
    (delivery,) = stack.sandbox.deliveries("INV-BADSIG-1")
    assert [a.status_code for a in delivery.attempts] == [401, 401, 401, 401]
    assert (await stack.order("INV-BADSIG-1"))["status"] == "pending"
    assert set((await stack.assert_books_balance()).values()) == {0}
    assert [n["outcome"] for n in await stack.inbox()] == ["invalid_signature"] * 4

    stack.sandbox.faults.bad_notification_signature = False
    attempt = await stack.sandbox.resend("INV-BADSIG-1", client_id=CLIENT_ID)
    assert attempt.status_code == 200
    await stack.wait_for_status("INV-BADSIG-1", "captured")
    assert (await stack.assert_books_balance())["doku:clearing"] == AMOUNT


async def test_unknown_client_id_is_refused_and_posts_nothing(stack: Stack) -> None:
    await stack.create_seller("tenun")
    await stack.place_order("INV-CID-1", ITEMS)
    before = await stack.accounts()
    body = notification_body("INV-CID-1", AMOUNT)
    r = await stack.notify(body, client_id="MCH-9999-UNKNOWN", secret_key="SK-whatever")
    assert_problem(r, 401, "unknown_client_id")
    r = await stack.anon.post(NOTIFICATION_PATH, content=body, headers={"Content-Type": "application/json"})
    assert_problem(r, 401, "unknown_client_id")
    assert (await stack.order("INV-CID-1"))["status"] == "pending"
    assert await stack.accounts() == before


async def test_malformed_but_signed_body_is_refused_kept_and_posts_nothing(stack: Stack) -> None:
    await stack.create_seller("tenun")
    await stack.place_order("INV-MAL-1", ITEMS)
    before = await stack.accounts()
    for body in (
        b"{not json",
        b'{"order": {"invoice_number": "INV-MAL-1"}}',
        b"[]",
        b'{"order": {"invoice_number": "INV-MAL-1", "amount": -5}, "transaction": {"status": "SUCCESS"}}',
    ):
        r = await stack.notify(body)
        assert_problem(r, 400, "malformed_message")
    assert [n["outcome"] for n in await stack.inbox()] == ["malformed_message"] * 4
    assert (await stack.order("INV-MAL-1"))["status"] == "pending"
    assert await stack.accounts() == before


async def test_amount_mismatch_is_acknowledged_not_posted_and_becomes_an_exception(stack: Stack) -> None:
    await stack.create_seller("tenun")
    await stack.place_order("INV-MISMATCH-1", ITEMS)
    before = await stack.accounts()
    r = await stack.notify(notification_body("INV-MISMATCH-1", AMOUNT - 1))
    assert r.status_code == 200, r.text  # DOKU gets its 2xx: resending cannot fix the amount
    assert r.json()["outcome"] == "amount_mismatch"
    assert (await stack.order("INV-MISMATCH-1"))["status"] == "pending"
    assert await stack.accounts() == before
    (exc,) = await stack.exceptions()
    assert (exc["kind"], exc["source"], exc["invoice_number"]) == ("amount_mismatch", "notification", "INV-MISMATCH-1")
    assert (exc["expected"], exc["actual"]) == (AMOUNT, AMOUNT - 1)
    assert [n["outcome"] for n in await stack.inbox("INV-MISMATCH-1")] == ["amount_mismatch"]
    rec = (await stack.client.get("/v1/reconciliation")).json()
    assert rec["clean"] is False
    assert "open_exceptions" in [i["code"] for i in rec["issues"]]


async def test_unknown_invoice_is_acknowledged_not_posted_and_becomes_an_exception(stack: Stack) -> None:
    before = await stack.accounts()
    r = await stack.notify(notification_body("INV-NOBODY-1", 75_000))
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "unknown_invoice"
    assert await stack.accounts() == before
    (exc,) = await stack.exceptions()
    assert (exc["kind"], exc["invoice_number"], exc["actual"], exc["expected"]) == (
        "unknown_invoice",
        "INV-NOBODY-1",
        75_000,
        None,
    )
    r = await stack.client.get("/v1/orders/INV-NOBODY-1")
    assert_problem(r, 404, "order_not_found")


async def test_concurrent_duplicates_capture_exactly_once(stack: Stack) -> None:
    await stack.create_seller("tenun")
    await stack.place_order("INV-RACE-1", ITEMS)
    body = notification_body("INV-RACE-1", AMOUNT)
    answers = await asyncio.gather(*(stack.notify(body) for _ in range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert outcomes == ["captured"] + ["duplicate"] * 7
    assert (await stack.assert_books_balance())["doku:clearing"] == AMOUNT


async def test_a_stale_but_signed_notification_triggers_a_status_check(stack: Stack) -> None:
    """A correct signature with an old timestamp is refused, and the service asks DOKU instead."""
    await stack.create_seller("tenun")
    await stack.place_order("INV-STALE-1", ITEMS)
    stack.sandbox.faults.drop_notifications = 4  # DOKU's own notification never arrives
    await stack.sandbox.approve("INV-STALE-1", client_id=CLIENT_ID)
    await stack.sandbox.drain()
    body = notification_body("INV-STALE-1", AMOUNT)
    old = signing.format_timestamp(datetime.now(UTC) - timedelta(days=30))
    headers = {
        "Client-Id": CLIENT_ID,
        "Request-Id": "stale-1",
        "Request-Timestamp": old,
        "Signature": signing.sign(
            secret_key=SECRET_KEY,
            client_id=CLIENT_ID,
            request_id="stale-1",
            timestamp=old,
            target=NOTIFICATION_PATH,
            body=body,
        ),
    }
    r = await stack.anon.post(NOTIFICATION_PATH, content=body, headers=headers)
    assert_problem(r, 401, "stale_timestamp")
    await poll(lambda: _is_captured(stack, "INV-STALE-1"), 5.0, "the status check never captured")


async def _is_captured(stack: Stack, invoice: str) -> bool:
    return (await stack.order(invoice))["status"] == "captured"
