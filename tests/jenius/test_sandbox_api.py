"""The client against the simulated DOKU over real loopback HTTP: acceptance, refusals, idempotency,
retries that keep their Request-Id, and tampering caught in both directions."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest

from jenius import signing
from jenius.client import JeniusClient
from jenius.errors import InvalidSignature, Rejected, Unavailable
from jenius.messages import LineItem, encoder
from jenius.sandbox import Sandbox, SandboxMerchant, serve_sandbox
from tests.jenius.conftest import CLIENT_ID, SECRET_KEY, RecordingTransport, client_config, payment

PAY_PATH = "/jenius-digital-banking/v2/ServiceRequestPayment"


def signed_headers(
    body: bytes | None,
    *,
    request_id: str,
    target: str = PAY_PATH,
    client_id: str = CLIENT_ID,
    secret: str = SECRET_KEY,
    timestamp: str | None = None,
) -> dict[str, str]:
    timestamp = timestamp or signing.format_timestamp(datetime.now(UTC))
    return {
        "Content-Type": "application/json",
        "Client-Id": client_id,
        "Request-Id": request_id,
        "Request-Timestamp": timestamp,
        "Signature": signing.sign(
            secret_key=secret, client_id=client_id, request_id=request_id, timestamp=timestamp, target=target, body=body
        ),
    }


def error_code(response: httpx.Response) -> str:
    return msgspec.json.decode(response.content)["error"]["code"]


def answer_is_signed(response: httpx.Response, *, request_id: str, target: str = PAY_PATH) -> bool:
    return signing.verify(
        secret_key=SECRET_KEY,
        client_id=response.headers["Client-Id"],
        request_id=request_id,
        timestamp=response.headers["Response-Timestamp"],
        target=target,
        body=response.content,
        signature=response.headers["Signature"],
        timestamp_label=signing.RESPONSE_TIMESTAMP,
    )


async def test_a_payment_request_creates_a_pending_order(doku: JeniusClient, sandbox: Sandbox) -> None:
    result = await doku.request_payment(payment("INV-1"), request_id="rid-1")
    assert (result.status, result.amount, result.already_done) == ("SUCCESS", 50_000, False)
    order = sandbox.order("INV-1")
    assert (order.status, order.amount, order.request_id, order.client_id) == ("PENDING", 50_000, "rid-1", CLIENT_ID)
    status = await doku.check_status("INV-1")
    assert (status.transaction.status, status.order.amount) == ("PENDING", 50_000)


async def test_a_repeated_request_id_is_already_done_and_creates_nothing(doku: JeniusClient, sandbox: Sandbox) -> None:
    first = await doku.request_payment(payment("INV-1"), request_id="rid-1")
    again = await doku.request_payment(payment("INV-1"), request_id="rid-1")
    assert (first.already_done, again.already_done) == (False, True)
    assert again.response == first.response
    assert len(sandbox.orders()) == 1


async def test_a_lost_answer_is_retried_with_the_same_request_id_and_doku_acts_once(
    sandbox: Sandbox, doku_url: str, transport: RecordingTransport
) -> None:
    sandbox.faults.timeout_next = 1  # DOKU processes the request, the answer never arrives
    async with JeniusClient(client_config(doku_url, timeout_s=0.3), transport=transport) as doku:
        result = await doku.request_payment(payment("INV-1"), request_id="rid-lost")
    assert result.already_done
    assert [r.headers["Request-Id"] for r in transport.sent] == ["rid-lost", "rid-lost"]
    assert transport.sent[0].headers["Signature"] and transport.sent[1].content == transport.sent[0].content
    assert len(sandbox.orders()) == 1


async def test_5xx_is_retried_with_the_same_request_id(
    sandbox: Sandbox, doku: JeniusClient, transport: RecordingTransport
) -> None:
    sandbox.faults.fail_5xx_next = 2
    result = await doku.request_payment(payment("INV-1"), request_id="rid-5xx")
    assert (result.status, result.already_done) == ("SUCCESS", False)
    assert [r.headers["Request-Id"] for r in transport.sent] == ["rid-5xx"] * 3


async def test_persistent_5xx_is_unavailable(sandbox: Sandbox, doku: JeniusClient) -> None:
    sandbox.faults.fail_5xx_next = 3
    sandbox.faults.fail_5xx_status = 502
    with pytest.raises(Unavailable) as caught:
        await doku.request_payment(payment("INV-1"), request_id="rid")
    assert caught.value.status == 502
    assert sandbox.orders() == ()


async def test_latency_beyond_the_timeout_is_unavailable(sandbox: Sandbox, doku_url: str) -> None:
    sandbox.faults.latency_s = 0.4
    async with JeniusClient(client_config(doku_url, timeout_s=0.1, max_attempts=2)) as doku:
        with pytest.raises(Unavailable):
            await doku.check_status("INV-1")


async def test_latency_within_the_timeout_only_slows_the_answer(sandbox: Sandbox, doku: JeniusClient) -> None:
    sandbox.faults.latency_s = 0.1
    started = time.monotonic()
    await doku.request_payment(payment("INV-1"), request_id="rid")
    assert time.monotonic() - started >= 0.1


async def test_badly_signed_answers_are_rejected_by_the_client(sandbox: Sandbox, doku: JeniusClient) -> None:
    sandbox.faults.bad_response_signature = True
    with pytest.raises(InvalidSignature):
        await doku.request_payment(payment("INV-1"), request_id="rid")
    with pytest.raises(InvalidSignature):
        await doku.check_status("INV-1")


async def test_badly_signed_answers_pass_when_rejection_is_off(sandbox: Sandbox, doku_url: str) -> None:
    sandbox.faults.bad_response_signature = True
    async with JeniusClient(client_config(doku_url, reject_bad_response_signature=False)) as doku:
        result = await doku.request_payment(payment("INV-1"), request_id="rid")
    assert result.status == "SUCCESS"


@pytest.mark.parametrize(
    ("request_kwargs", "config", "status", "code"),
    [
        ({"invoice_number": "X" * 65}, {}, 400, "invalid_invoice_number"),
        ({"amount": 9_999, "line_items": ()}, {}, 400, "amount_out_of_range"),
        ({"amount": 100_000_001, "line_items": ()}, {}, 400, "amount_out_of_range"),
        ({"line_items": (LineItem(name="a", price=40_000, quantity=1),)}, {}, 400, "line_items_mismatch"),
        ({"cash_tag": "admin"}, {}, 400, "invalid_cash_tag"),
        ({}, {"client_id": "MCH-unknown"}, 401, "invalid_client_id"),
        ({}, {"secret_key": "SK-wrong"}, 401, "invalid_signature"),
    ],
)
async def test_dokus_rules_are_enforced_with_doku_shaped_refusals(
    doku_url: str,
    sandbox: Sandbox,
    request_kwargs: dict[str, object],
    config: dict[str, object],
    status: int,
    code: str,
) -> None:
    async with JeniusClient(client_config(doku_url, **config)) as doku:
        with pytest.raises(Rejected) as caught:
            await doku.request_payment(payment(**{"invoice_number": "INV-1", **request_kwargs}), request_id="rid")
    assert (caught.value.status, caught.value.doku_code) == (status, code)
    assert sandbox.orders() == ()


async def test_a_request_stamped_too_far_from_dokus_clock_is_refused(doku_url: str) -> None:
    late = lambda: datetime.now(UTC) - timedelta(minutes=10)  # noqa: E731
    async with JeniusClient(client_config(doku_url), clock=late) as doku:
        with pytest.raises(Rejected) as caught:
            await doku.request_payment(payment("INV-1"), request_id="rid")
    assert (caught.value.status, caught.value.doku_code) == (401, "invalid_timestamp")


async def test_an_invoice_number_can_only_be_used_once(doku: JeniusClient) -> None:
    await doku.request_payment(payment("INV-1"), request_id="rid-1")
    with pytest.raises(Rejected) as caught:
        await doku.request_payment(payment("INV-1"), request_id="rid-2")
    assert (caught.value.status, caught.value.doku_code) == (400, "duplicate_invoice_number")


async def test_a_request_id_reused_with_another_body_is_a_conflict(doku: JeniusClient, sandbox: Sandbox) -> None:
    await doku.request_payment(payment("INV-1"), request_id="rid-1")
    with pytest.raises(Rejected) as caught:
        await doku.request_payment(payment("INV-2"), request_id="rid-1")
    assert (caught.value.status, caught.value.doku_code) == (409, "duplicate_request_id")
    assert [o.invoice_number for o in sandbox.orders()] == ["INV-1"]


async def test_a_repeat_gets_the_first_answers_bytes_with_409(doku_url: str) -> None:
    body = encoder.encode(payment("INV-1"))
    async with httpx.AsyncClient(base_url=doku_url) as http:
        first = await http.post(PAY_PATH, content=body, headers=signed_headers(body, request_id="rid-raw"))
        again = await http.post(PAY_PATH, content=body, headers=signed_headers(body, request_id="rid-raw"))
    assert (first.status_code, again.status_code) == (200, 409)
    assert again.content == first.content
    assert answer_is_signed(first, request_id="rid-raw") and answer_is_signed(again, request_id="rid-raw")


async def test_a_repeated_refusal_is_the_same_refusal_with_409(doku_url: str) -> None:
    body = encoder.encode(payment("X" * 65))
    async with httpx.AsyncClient(base_url=doku_url) as http:
        first = await http.post(PAY_PATH, content=body, headers=signed_headers(body, request_id="rid-bad"))
        again = await http.post(PAY_PATH, content=body, headers=signed_headers(body, request_id="rid-bad"))
    assert (first.status_code, again.status_code) == (400, 409)
    assert error_code(again) == error_code(first) == "invalid_invoice_number"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_body"),
        (b"{}", "invalid_body"),
        (b'{"order":{"invoice_number":"A","amount":50000}}', "invalid_body"),
        (encoder.encode(payment()).replace(b'"50000"', b'"5e4"'), "invalid_amount"),
        (encoder.encode(payment()).replace(b'"50000"', b'"1234567890123"'), "invalid_amount"),
        (
            encoder.encode(payment()).replace(b'"additional_info":{}', b'"additional_info":{"settlement":[{"x":1}]}'),
            "invalid_settlement",
        ),
    ],
)
async def test_malformed_bodies_are_refused(doku_url: str, body: bytes, code: str) -> None:
    async with httpx.AsyncClient(base_url=doku_url) as http:
        response = await http.post(PAY_PATH, content=body, headers=signed_headers(body, request_id="rid"))
    assert (response.status_code, error_code(response)) == (400, code)


@pytest.mark.parametrize(
    ("shares", "accepted"),
    [
        (
            [
                {"bank_account_settlement_id": "SBA-1", "value": 60, "type": "PERCENTAGE"},
                {"bank_account_settlement_id": "SBA-2", "value": 40, "type": "PERCENTAGE"},
            ],
            True,
        ),
        ([{"bank_account_settlement_id": "SBA-1", "value": 101, "type": "PERCENTAGE"}], False),
        ([{"bank_account_settlement_id": "SBA-1", "value": 47_500, "type": "FIX"}], True),  # net of the 2,500 fee
        ([{"bank_account_settlement_id": "SBA-1", "value": 47_501, "type": "FIX"}], False),
    ],
)
async def test_split_settlement_may_not_exceed_100_percent_or_the_net(
    doku_url: str, shares: list, accepted: bool
) -> None:
    req = payment("INV-1")
    req = msgspec.structs.replace(req, additional_info={"settlement": shares})
    body = encoder.encode(req)
    async with httpx.AsyncClient(base_url=doku_url) as http:
        response = await http.post(PAY_PATH, content=body, headers=signed_headers(body, request_id="rid"))
    assert response.status_code == (200 if accepted else 400)


def _tamper_body(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"50000", b"50001", 1), headers


def _tamper_header(name: str, value: str):
    def tamper(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        return body, {**headers, name: value}

    return tamper


TAMPERINGS = {
    "one byte of the body": _tamper_body,
    "Client-Id (another known merchant)": _tamper_header("Client-Id", "MCH-2"),
    "Request-Id": _tamper_header("Request-Id", "rid-tampered"),
    "Request-Timestamp": _tamper_header(
        "Request-Timestamp", signing.format_timestamp(datetime.now(UTC) - timedelta(seconds=1))
    ),
    "Signature": _tamper_header("Signature", "HMACSHA256=GDZK9vFEyzmjz9K91kO+jIR9PS6nSzqlnFU3e6QqTs0="),
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
async def test_a_tampered_request_is_refused_as_badly_signed(sandbox: Sandbox, doku_url: str, tampering: str) -> None:
    sandbox.add_merchant(SandboxMerchant(client_id="MCH-2", secret_key=SECRET_KEY))
    body = encoder.encode(payment("INV-1"))
    body, headers = TAMPERINGS[tampering](body, signed_headers(body, request_id="rid-t"))
    async with httpx.AsyncClient(base_url=doku_url) as http:
        response = await http.post(PAY_PATH, content=body, headers=headers)
    assert (response.status_code, error_code(response)) == (401, "invalid_signature")
    assert sandbox.orders() == ()


async def test_a_request_signed_for_another_target_is_refused(sandbox: Sandbox, doku_url: str) -> None:
    body = encoder.encode(payment("INV-1"))
    headers = signed_headers(body, request_id="rid", target="/jenius-digital-banking/v2/ServiceRequestRefund")
    async with httpx.AsyncClient(base_url=doku_url) as http:
        response = await http.post(PAY_PATH, content=body, headers=headers)
    assert (response.status_code, error_code(response)) == (401, "invalid_signature")


@pytest.mark.parametrize("missing", ["Request-Id", "Request-Timestamp", "Signature"])
async def test_a_request_without_a_signing_header_is_refused(doku_url: str, missing: str) -> None:
    body = encoder.encode(payment("INV-1"))
    headers = signed_headers(body, request_id="rid")
    del headers[missing]
    async with httpx.AsyncClient(base_url=doku_url) as http:
        response = await http.post(PAY_PATH, content=body, headers=headers)
    assert (response.status_code, error_code(response)) == (400, "invalid_header")


async def test_status_is_found_by_invoice_or_by_request_id(doku: JeniusClient, sandbox: Sandbox) -> None:
    await doku.request_payment(payment("INV/2024/1"), request_id="rid-slash")
    await sandbox.approve("INV/2024/1")
    by_invoice = await doku.check_status("INV/2024/1")
    by_request_id = await doku.check_status("rid-slash")
    assert by_invoice == by_request_id
    assert (by_invoice.transaction.status, by_invoice.transaction.original_request_id) == ("SUCCESS", "rid-slash")


async def test_status_of_an_unknown_order_is_rejected_not_found(doku: JeniusClient) -> None:
    with pytest.raises(Rejected) as caught:
        await doku.check_status("INV-unknown")
    assert (caught.value.status, caught.value.doku_code) == (404, "order_not_found")


async def test_an_order_belongs_to_its_merchant(sandbox: Sandbox, doku: JeniusClient, doku_url: str) -> None:
    await doku.request_payment(payment("INV-1"), request_id="rid")
    sandbox.add_merchant(SandboxMerchant(client_id="MCH-2", secret_key="SK-2"))
    async with JeniusClient(client_config(doku_url, client_id="MCH-2", secret_key="SK-2")) as other:
        with pytest.raises(Rejected) as caught:
            await other.check_status("INV-1")
    assert caught.value.doku_code == "order_not_found"


async def test_partial_then_final_refund_marks_the_order_refunded(doku: JeniusClient, sandbox: Sandbox) -> None:
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    first = await doku.refund(invoice_number="INV-1", amount=20_000, reason="one item", request_id="rf-1")
    assert (first.amount, (await doku.check_status("INV-1")).transaction.status) == (20_000, "SUCCESS")
    await doku.refund(invoice_number="INV-1", amount=30_000, reason="the rest", request_id="rf-2")
    assert (await doku.check_status("INV-1")).transaction.status == "REFUNDED"
    assert sandbox.order("INV-1").refunded == 50_000


async def test_a_repeated_refund_is_already_done_and_refunds_once(doku: JeniusClient, sandbox: Sandbox) -> None:
    await doku.request_payment(payment("INV-1"), request_id="rid")
    await sandbox.approve("INV-1")
    await doku.refund(invoice_number="INV-1", amount=20_000, reason="x", request_id="rf-1")
    again = await doku.refund(invoice_number="INV-1", amount=20_000, reason="x", request_id="rf-1")
    assert again.already_done and sandbox.order("INV-1").refunded == 20_000


@pytest.mark.parametrize(
    ("approve", "refund_amount", "invoice", "code", "status"),
    [
        (True, 50_001, "INV-1", "refund_exceeds_amount", 400),
        (False, 1_000, "INV-1", "order_not_refundable", 400),
        (True, 1_000, "INV-unknown", "order_not_found", 404),
    ],
)
async def test_refunds_are_bounded_by_what_was_captured(
    doku: JeniusClient, sandbox: Sandbox, approve: bool, refund_amount: int, invoice: str, code: str, status: int
) -> None:
    await doku.request_payment(payment("INV-1"), request_id="rid")
    if approve:
        await sandbox.approve("INV-1")
    with pytest.raises(Rejected) as caught:
        await doku.refund(invoice_number=invoice, amount=refund_amount, reason="x", request_id="rf")
    assert (caught.value.doku_code, caught.value.status) == (code, status)
    assert sandbox.order("INV-1").refunded == 0


async def test_an_unknown_path_gets_a_doku_shaped_404(doku_url: str) -> None:
    async with httpx.AsyncClient(base_url=doku_url) as http:
        response = await http.post("/no/such/path", content=b"{}")
    assert (response.status_code, error_code(response)) == (404, "not_found")
    assert set(msgspec.json.decode(response.content)["error"]) == {"code", "message", "type"}


async def test_the_sandbox_paths_are_configurable(inbox_server: object) -> None:
    sandbox = Sandbox(
        merchants=[SandboxMerchant(client_id=CLIENT_ID, secret_key=SECRET_KEY)],
        payment_path="/pay",
        refund_path="/refund",
        status_path_template="/status/{invoice_number}",
    )
    async with serve_sandbox(sandbox) as url:
        config = client_config(
            url, payment_path="/pay", refund_path="/refund", status_path_template="/status/{invoice_number}"
        )
        async with JeniusClient(config) as doku:
            await doku.request_payment(payment("INV-1"), request_id="rid")
            await sandbox.approve("INV-1")
            await doku.refund(invoice_number="INV-1", amount=1_000, reason="x", request_id="rf")
            assert (await doku.check_status("INV-1")).order.amount == 50_000
