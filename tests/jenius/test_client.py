"""The client against a scripted DOKU behind ``httpx.MockTransport``: every branch of the error tree.

The fake DOKU here checks every request's signature over the bytes it actually received, so each
test also proves the client signs what it sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from jenius import signing
from jenius.client import JeniusClient, JeniusConfig
from jenius.errors import InvalidSignature, Rejected, Unavailable, UnexpectedResponse
from jenius.messages import encoder
from tests.jenius.conftest import CLIENT_ID, SECRET_KEY, payment

NOW = datetime(2024, 5, 2, 3, 15, tzinfo=UTC)
PAY_PATH = "/jenius-digital-banking/v2/ServiceRequestPayment"


def request_is_signed(request: httpx.Request) -> bool:
    target = signing.request_target(request.url.raw_path.decode())
    return signing.verify(
        secret_key=SECRET_KEY,
        client_id=request.headers["Client-Id"],
        request_id=request.headers["Request-Id"],
        timestamp=request.headers["Request-Timestamp"],
        target=target,
        body=None if request.method == "GET" else request.content,
        signature=request.headers["Signature"],
    )


def answer(
    request: httpx.Request,
    status: int,
    body: bytes,
    *,
    secret: str = SECRET_KEY,
    request_id: str | None = None,
    client_id: str = CLIENT_ID,
    target: str | None = None,
    signed_body: bytes | None = None,
    signed_timestamp: str | None = None,
    signed: bool = True,
) -> httpx.Response:
    """DOKU's answer, signed the documented way; the keyword arguments forge one part of it."""
    request_id = request_id or request.headers["Request-Id"]
    timestamp = signing.format_timestamp(NOW)
    headers = {"Client-Id": client_id, "Request-Id": request_id, "Response-Timestamp": timestamp}
    if signed:
        headers["Signature"] = signing.sign(
            secret_key=secret,
            client_id=client_id,
            request_id=request_id,
            timestamp=signed_timestamp or timestamp,
            target=target or signing.request_target(request.url.raw_path.decode()),
            body=body if signed_body is None else signed_body,
            timestamp_label=signing.RESPONSE_TIMESTAMP,
        )
    return httpx.Response(status, content=body, headers=headers)


def accepted(invoice: str = "INV-0001", amount: str = "50000", status: str = "SUCCESS") -> bytes:
    return msgspec.json.encode(
        {"order": {"invoice_number": invoice, "amount": amount}, "internet_banking_payment": {"status": status}}
    )


def error(code: str) -> bytes:
    return msgspec.json.encode({"error": {"code": code, "message": "m", "type": "invalid_parameter"}})


class FakeDoku:
    """Answers from a script of callables (or exceptions to raise), one per request, and keeps them."""

    def __init__(self, *script: Callable[[httpx.Request], httpx.Response] | Exception) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request_is_signed(request), "the client sent a request whose signature does not verify"
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step(request)

    @property
    def request_ids(self) -> list[str]:
        return [r.headers["Request-Id"] for r in self.requests]


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def client(fake: FakeDoku, sleeps: Sleeps | None = None, **config: object) -> JeniusClient:
    settings: dict[str, object] = {"client_id": CLIENT_ID, "secret_key": SECRET_KEY, "base_url": "https://doku.test"}
    settings.update(config)
    return JeniusClient(
        JeniusConfig(**settings),  # type: ignore[arg-type]
        transport=httpx.MockTransport(fake),
        clock=lambda: NOW,
        sleep=sleeps or Sleeps(),
    )


async def test_a_payment_request_sends_the_encoded_bytes_signed_with_dokus_headers() -> None:
    fake = FakeDoku(lambda r: answer(r, 200, accepted()))
    req = payment()
    async with client(fake) as doku:
        result = await doku.request_payment(req, request_id="rid-1")
    sent = fake.requests[0]
    assert sent.method == "POST" and sent.url.path == PAY_PATH
    assert sent.content == encoder.encode(req)
    assert sent.headers["Client-Id"] == CLIENT_ID
    assert sent.headers["Request-Id"] == "rid-1"
    assert sent.headers["Request-Timestamp"] == "2024-05-02T03:15:00Z"
    assert sent.headers["Signature"].startswith("HMACSHA256=")
    assert sent.headers["Content-Type"] == "application/json"
    assert (result.invoice_number, result.amount, result.status, result.already_done) == (
        "INV-0001",
        50_000,
        "SUCCESS",
        False,
    )


async def test_every_path_comes_from_the_config() -> None:
    fake = FakeDoku(
        lambda r: answer(r, 200, accepted()),
        lambda r: answer(r, 200, accepted(amount="1000")),
        lambda r: answer(
            r, 200, b'{"order":{"invoice_number":"INV-0001","amount":1},"transaction":{"status":"PENDING"}}'
        ),
    )
    async with client(
        fake,
        base_url="https://doku.test/prefix",
        payment_path="/p",
        refund_path="/r",
        status_path_template="/s/{invoice_number}/x",
    ) as doku:
        await doku.request_payment(payment(), request_id="a")
        await doku.refund(invoice_number="INV-0001", amount=1_000, reason="x", request_id="b")
        await doku.check_status("INV-0001")
    assert [r.url.path for r in fake.requests] == ["/prefix/p", "/prefix/r", "/prefix/s/INV-0001/x"]


async def test_a_status_check_is_a_get_signed_without_digest_and_quotes_the_invoice() -> None:
    body = b'{"order":{"invoice_number":"INV/1","amount":50000},"transaction":{"status":"SUCCESS"}}'
    fake = FakeDoku(lambda r: answer(r, 200, body))
    async with client(fake) as doku:
        status = await doku.check_status("INV/1", request_id="st-1")
    sent = fake.requests[0]
    assert sent.method == "GET" and sent.content == b""
    assert sent.url.raw_path == b"/orders/v1/status/INV%2F1"
    assert (status.order.amount, status.transaction.status) == (50_000, "SUCCESS")


async def test_a_refund_sends_invoice_amount_and_reason() -> None:
    fake = FakeDoku(lambda r: answer(r, 200, accepted(amount="15000")))
    async with client(fake) as doku:
        result = await doku.refund(invoice_number="INV-0001", amount=15_000, reason="damaged", request_id="rf-1")
    assert msgspec.json.decode(fake.requests[0].content) == {
        "order": {"invoice_number": "INV-0001", "amount": "15000", "reason": "damaged"}
    }
    assert (result.amount, result.already_done, result.request_id) == (15_000, False, "rf-1")


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.ReadTimeout("slow"),
        httpx.WriteTimeout("slow"),
        httpx.PoolTimeout("busy"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("garbage"),
    ],
)
async def test_transport_failures_are_retried_with_the_same_request_id_then_unavailable(failure: Exception) -> None:
    fake = FakeDoku(failure, failure, failure)
    sleeps = Sleeps()
    async with client(fake, sleeps, max_attempts=3, backoff_base_s=0.5, backoff_max_s=8.0) as doku:
        with pytest.raises(Unavailable) as caught:
            await doku.request_payment(payment(), request_id="rid-retry")
    assert caught.value.code == "unavailable" and caught.value.retryable
    assert fake.request_ids == ["rid-retry"] * 3
    assert sleeps.delays == [0.5, 1.0]


async def test_a_retry_after_a_timeout_succeeds_with_the_same_request_id() -> None:
    fake = FakeDoku(httpx.ReadTimeout("lost"), lambda r: answer(r, 409, accepted()))
    async with client(fake) as doku:
        result = await doku.request_payment(payment(), request_id="rid-lost")
    assert fake.request_ids == ["rid-lost", "rid-lost"]
    assert result.already_done


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_5xx_and_429_are_retried_and_then_unavailable_with_the_status(status: int) -> None:
    fake = FakeDoku(*[lambda r: httpx.Response(status, content=b"busy")] * 3)
    async with client(fake) as doku:
        with pytest.raises(Unavailable) as caught:
            await doku.request_payment(payment(), request_id="rid-5xx")
    assert caught.value.status == status
    assert fake.request_ids == ["rid-5xx"] * 3


async def test_a_5xx_then_success_returns_the_result() -> None:
    fake = FakeDoku(lambda r: httpx.Response(503), lambda r: answer(r, 200, accepted()))
    async with client(fake) as doku:
        result = await doku.request_payment(payment(), request_id="rid-1")
    assert result.status == "SUCCESS" and len(fake.requests) == 2


async def test_backoff_is_capped() -> None:
    fake = FakeDoku(*[httpx.ConnectError("x")] * 5)
    sleeps = Sleeps()
    async with client(fake, sleeps, max_attempts=5, backoff_base_s=1.0, backoff_max_s=3.0) as doku:
        with pytest.raises(Unavailable):
            await doku.check_status("INV-1")
    assert sleeps.delays == [1.0, 2.0, 3.0, 3.0]


async def test_a_status_check_reuses_one_generated_request_id_across_retries() -> None:
    fake = FakeDoku(
        httpx.ConnectError("x"),
        lambda r: answer(r, 200, b'{"order":{"invoice_number":"A","amount":1},"transaction":{"status":"PENDING"}}'),
    )
    async with client(fake) as doku:
        await doku.check_status("A")
    assert len(set(fake.request_ids)) == 1 and len(fake.request_ids) == 2


@pytest.mark.parametrize(
    ("status", "code"), [(400, "invalid_amount"), (401, "invalid_signature"), (404, "order_not_found")]
)
async def test_a_4xx_is_rejected_with_dokus_code_and_never_retried(status: int, code: str) -> None:
    fake = FakeDoku(lambda r: answer(r, status, error(code)))
    async with client(fake) as doku:
        with pytest.raises(Rejected) as caught:
            await doku.request_payment(payment(), request_id="rid-4xx")
    assert (caught.value.code, caught.value.doku_code, caught.value.status) == ("rejected", code, status)
    assert len(fake.requests) == 1


async def test_a_4xx_without_dokus_error_shape_is_rejected_with_the_http_status() -> None:
    fake = FakeDoku(lambda r: httpx.Response(403, content=b"<html>forbidden</html>"))
    async with client(fake) as doku:
        with pytest.raises(Rejected) as caught:
            await doku.refund(invoice_number="INV-1", amount=1, reason="x", request_id="r")
    assert (caught.value.doku_code, caught.value.status) == ("http_403", 403)


async def test_409_with_the_first_answer_is_already_done() -> None:
    fake = FakeDoku(lambda r: answer(r, 409, accepted()))
    async with client(fake) as doku:
        result = await doku.request_payment(payment(), request_id="rid-again")
    assert result.already_done and result.status == "SUCCESS"


async def test_409_for_a_refund_is_already_done() -> None:
    fake = FakeDoku(lambda r: answer(r, 409, accepted(amount="5000")))
    async with client(fake) as doku:
        result = await doku.refund(invoice_number="INV-0001", amount=5_000, reason="x", request_id="rf")
    assert result.already_done


async def test_409_carrying_an_error_is_rejected_with_that_code() -> None:
    fake = FakeDoku(lambda r: answer(r, 409, error("duplicate_request_id")))
    async with client(fake) as doku:
        with pytest.raises(Rejected) as caught:
            await doku.request_payment(payment(), request_id="rid-reused")
    assert (caught.value.doku_code, caught.value.status) == ("duplicate_request_id", 409)


async def test_a_payment_status_other_than_success_is_rejected_with_that_status() -> None:
    fake = FakeDoku(lambda r: answer(r, 200, accepted(status="FAILED")))
    async with client(fake) as doku:
        with pytest.raises(Rejected) as caught:
            await doku.request_payment(payment(), request_id="rid")
    assert (caught.value.doku_code, caught.value.status) == ("FAILED", 200)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"not json"),
        (200, b'{"order":{"invoice_number":"INV-0001"}}'),
        (200, accepted(invoice="SOMEONE-ELSE")),
        (200, accepted(amount="49999")),
        (200, accepted(amount="5e4")),
        (201, b""),
        (409, b"<html>"),
    ],
)
async def test_answers_we_cannot_interpret_are_unexpected_with_status_and_raw_body(status: int, body: bytes) -> None:
    fake = FakeDoku(lambda r: answer(r, status, body))
    async with client(fake) as doku:
        with pytest.raises(UnexpectedResponse) as caught:
            await doku.request_payment(payment(), request_id="rid")
    assert (caught.value.code, caught.value.status, caught.value.body) == ("unexpected_response", status, body)


@pytest.mark.parametrize("status", [301, 302, 304, 307])
async def test_redirects_are_not_followed_and_are_unexpected(status: int) -> None:
    fake = FakeDoku(lambda r: httpx.Response(status, headers={"Location": "https://evil.test/"}, content=b"moved"))
    async with client(fake) as doku:
        with pytest.raises(UnexpectedResponse) as caught:
            await doku.check_status("INV-1")
    assert caught.value.status == status and len(fake.requests) == 1


async def test_an_unreadable_status_answer_is_unexpected() -> None:
    fake = FakeDoku(lambda r: answer(r, 200, b'{"order":{}}'))
    async with client(fake) as doku:
        with pytest.raises(UnexpectedResponse):
            await doku.check_status("INV-1")


async def test_a_refund_answer_for_another_amount_is_unexpected() -> None:
    fake = FakeDoku(lambda r: answer(r, 200, accepted(amount="9999")))
    async with client(fake) as doku:
        with pytest.raises(UnexpectedResponse):
            await doku.refund(invoice_number="INV-0001", amount=10_000, reason="x", request_id="rf")


FORGERIES: dict[str, Callable[[httpx.Request], httpx.Response]] = {
    "body changed after signing": lambda r: answer(r, 200, accepted(), signed_body=accepted().replace(b"5", b"6")),
    "timestamp changed after signing": lambda r: answer(r, 200, accepted(), signed_timestamp="2024-05-02T03:15:01Z"),
    "signed for another Request-Id": lambda r: answer(r, 200, accepted(), request_id="someone-elses"),
    "signed for another Client-Id": lambda r: answer(r, 200, accepted(), client_id="MCH-other"),
    "signed for another path": lambda r: answer(r, 200, accepted(), target="/other"),
    "signed with another key": lambda r: answer(r, 200, accepted(), secret="SK-attacker"),
    "not signed": lambda r: answer(r, 200, accepted(), signed=False),
}


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_tampered_or_unsigned_answers_are_rejected(forgery: str) -> None:
    fake = FakeDoku(FORGERIES[forgery])
    async with client(fake) as doku:
        with pytest.raises(InvalidSignature) as caught:
            await doku.request_payment(payment(), request_id="rid")
    assert caught.value.code == "invalid_signature"


async def test_a_tampered_409_replay_is_rejected_too() -> None:
    fake = FakeDoku(lambda r: answer(r, 409, accepted(), secret="SK-attacker"))
    async with client(fake) as doku:
        with pytest.raises(InvalidSignature):
            await doku.request_payment(payment(), request_id="rid")


async def test_a_tampered_status_answer_is_rejected() -> None:
    body = b'{"order":{"invoice_number":"INV-1","amount":50000},"transaction":{"status":"SUCCESS"}}'
    fake = FakeDoku(lambda r: answer(r, 200, body, signed_body=body.replace(b"SUCCESS", b"PENDING")))
    async with client(fake) as doku:
        with pytest.raises(InvalidSignature):
            await doku.check_status("INV-1")


async def test_a_bad_answer_signature_only_logs_when_rejection_is_off(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeDoku(lambda r: answer(r, 200, accepted(), secret="SK-attacker"))
    with caplog.at_level(logging.WARNING, logger="splitledger.jenius"):
        async with client(fake, reject_bad_response_signature=False) as doku:
            result = await doku.request_payment(payment(), request_id="rid")
    assert result.status == "SUCCESS"
    assert any(record.name == "splitledger.jenius" and "rid" in record.getMessage() for record in caplog.records)


async def test_an_unsupported_scheme_is_unavailable_without_retrying() -> None:
    fake = FakeDoku()
    sleeps = Sleeps()
    doku = JeniusClient(
        JeniusConfig(client_id=CLIENT_ID, secret_key=SECRET_KEY, base_url="ftp://doku.test"), sleep=sleeps
    )
    async with doku:
        with pytest.raises(Unavailable):
            await doku.check_status("INV-1")
    assert sleeps.delays == [] and fake.requests == []


async def test_nothing_listening_is_unavailable_over_real_sockets() -> None:
    config = JeniusConfig(
        client_id=CLIENT_ID, secret_key=SECRET_KEY, base_url="http://127.0.0.1:9", max_attempts=2, backoff_base_s=0.0
    )
    async with JeniusClient(config) as doku:
        with pytest.raises(Unavailable) as caught:
            await doku.request_payment(payment(), request_id="rid")
    assert isinstance(caught.value.__cause__, httpx.HTTPError)


@pytest.mark.parametrize("request_id", ["", "x" * 129])
async def test_request_ids_must_be_1_to_128_characters(request_id: str) -> None:
    fake = FakeDoku()
    async with client(fake) as doku:
        with pytest.raises(ValueError):
            await doku.request_payment(payment(), request_id=request_id)
    assert fake.requests == []


@pytest.mark.parametrize("amount", [0, -1, 1.5])
async def test_refund_amounts_must_be_positive_ints(amount: object) -> None:
    fake = FakeDoku()
    async with client(fake) as doku:
        with pytest.raises(ValueError):
            await doku.refund(invoice_number="INV-1", amount=amount, reason="x", request_id="r")  # type: ignore[arg-type]
    assert fake.requests == []


def test_the_secret_key_never_shows_in_the_config_repr() -> None:
    config = JeniusConfig(client_id=CLIENT_ID, secret_key=SECRET_KEY)
    assert SECRET_KEY not in repr(config) and CLIENT_ID in repr(config)
