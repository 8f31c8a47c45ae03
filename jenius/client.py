"""The one seam to DOKU's Jenius API: an ``httpx.AsyncClient`` that signs, retries and translates.

Rules this module enforces:
- One Request-Id per logical operation, chosen by the caller and reused on every retry: DOKU treats
  it as the idempotency key, so a retry can never make DOKU act twice. A repeat answered with HTTP 409
  and the first answer is "already done", not an error.
- Bounded retries with exponential backoff on connection errors, timeouts, 429 and 5xx; nothing else
  is retried (a 4xx will answer the same again).
- Requests are signed by :class:`JeniusAuth` over the bytes actually sent, with a fresh timestamp on
  every attempt. 2xx and 409 answers are verified against *our* Client-Id and Request-Id, the path
  we called, ``Response-Timestamp`` and the digest of the answer body (GET answers included: DOKU's
  page says the digest is for POST only, so this is [unconfirmed]); a mismatch raises or only logs,
  per ``JeniusConfig.reject_bad_response_signature``. 4xx answers are not verified: DOKU may not
  sign them, and acting on a refusal is safe.
- No httpx or msgspec exception escapes: everything becomes a :mod:`jenius.errors` class.

Notifications travel the other way; :func:`verify_notification` checks one the service received.

Notification timestamp window: DOKU resends a notification without a 2xx at +30 min, +6 h and
+12 h, and operators can resend by hand. The window only guards against *replay* of a captured,
genuinely signed notification; the HMAC already guards authenticity and the handler must be
idempotent anyway, so a replay can only repeat something DOKU really said. Whether DOKU re-signs a
resend with a fresh ``Request-Timestamp`` is [unconfirmed]; if it does not, a tight window would
reject genuine late resends and leave a captured payment unrecorded. So the default accepts 24 h into
the past (covers the whole automatic schedule, 18.5 h cumulative, with margin) and 5 min of clock
skew into the future. ``max_age=None`` disables the check. A ``StaleTimestamp`` from a correctly
signed notification is a cue to reconcile with :meth:`JeniusClient.check_status`, not to ignore it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import msgspec

from jenius import signing
from jenius.errors import (
    InvalidSignature,
    MalformedMessage,
    Rejected,
    StaleTimestamp,
    Unavailable,
    UnexpectedResponse,
)
from jenius.messages import (
    MAX_REQUEST_ID_LENGTH,
    Notification,
    PaymentRequest,
    PaymentResponse,
    RefundOrder,
    RefundRequest,
    StatusResponse,
    decode_error_answer,
    decode_notification,
    encoder,
    parse_amount_text,
    payment_response_decoder,
    status_response_decoder,
)

log = logging.getLogger("splitledger.jenius")

DEFAULT_NOTIFICATION_MAX_AGE = timedelta(hours=24)
DEFAULT_NOTIFICATION_MAX_FUTURE = timedelta(minutes=5)
DEFAULT_BASE_URL = "https://api-sandbox.doku.com"  # production: https://api.doku.com
DEFAULT_PAYMENT_PATH = "/jenius-digital-banking/v2/ServiceRequestPayment"
# DOKU documents no Jenius refund path; this mirrors the payment path's naming [unconfirmed].
DEFAULT_REFUND_PATH = "/jenius-digital-banking/v2/ServiceRequestRefund"
DEFAULT_STATUS_PATH_TEMPLATE = "/orders/v1/status/{invoice_number}"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class JeniusConfig(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    secret_key: str
    base_url: str = DEFAULT_BASE_URL
    payment_path: str = DEFAULT_PAYMENT_PATH
    refund_path: str = DEFAULT_REFUND_PATH
    status_path_template: str = DEFAULT_STATUS_PATH_TEMPLATE
    timeout_s: float = 15.0  # read/write/pool; DOKU talks to the bank synchronously
    connect_timeout_s: float = 5.0
    max_attempts: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    reject_bad_response_signature: bool = True

    def __repr__(self) -> str:  # the secret key must never reach a log line
        return f"JeniusConfig(client_id={self.client_id!r}, base_url={self.base_url!r}, secret_key=***)"


class PaymentResult(msgspec.Struct, frozen=True, kw_only=True):
    """DOKU delivered the request to the customer's Jenius app. It is *not* a capture: only a
    notification or a status check says the customer paid."""

    request_id: str
    invoice_number: str
    amount: int
    status: str
    already_done: bool  # True when DOKU answered 409: this Request-Id was processed before
    response: PaymentResponse


class RefundResult(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    invoice_number: str
    amount: int
    status: str
    already_done: bool
    response: PaymentResponse


class JeniusAuth(httpx.Auth):
    """Signs each attempt over the exact body bytes httpx is about to send.

    The Request-Id must already be on the request (the client sets it once per logical operation);
    Client-Id, Request-Timestamp and Signature are (re)written on every attempt.
    """

    requires_request_body = True

    def __init__(self, *, client_id: str, secret_key: str, clock: Clock = utc_now) -> None:
        self._client_id = client_id
        self._secret_key = secret_key
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request_id = request.headers.get("Request-Id") or str(uuid.uuid4())
        timestamp = signing.format_timestamp(self._clock())
        target = signing.request_target(request.url.raw_path.decode("ascii"))
        body = None if request.method == "GET" else request.content
        request.headers["Client-Id"] = self._client_id
        request.headers["Request-Id"] = request_id
        request.headers["Request-Timestamp"] = timestamp
        request.headers["Signature"] = signing.sign(
            secret_key=self._secret_key,
            client_id=self._client_id,
            request_id=request_id,
            timestamp=timestamp,
            target=target,
            body=body,
        )
        yield request


class JeniusClient:
    """``async with JeniusClient(config) as doku: await doku.request_payment(req, request_id=...)``.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); ``clock`` stamps requests;
    ``sleep`` is the backoff wait.
    """

    def __init__(
        self,
        config: JeniusConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            transport=transport,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            auth=JeniusAuth(client_id=config.client_id, secret_key=config.secret_key, clock=clock),
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )

    async def __aenter__(self) -> JeniusClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- operations ----------------------------------------------------------------------------

    async def request_payment(self, req: PaymentRequest, *, request_id: str) -> PaymentResult:
        response, already_done = await self._post(self.config.payment_path, encoder.encode(req), request_id)
        amount = _echoed_amount(response)
        if response.decoded.order.invoice_number != req.order.invoice_number or amount != parse_amount_text(
            req.order.amount
        ):
            raise UnexpectedResponse("answer is for another order", status=response.http_status, body=response.body)
        answer = response.decoded
        status = answer.internet_banking_payment.status
        if status != "SUCCESS":
            raise Rejected(doku_code=status, status=response.http_status)
        return PaymentResult(
            request_id=request_id,
            invoice_number=answer.order.invoice_number,
            amount=amount,
            status=status,
            already_done=already_done,
            response=answer,
        )

    async def refund(self, *, invoice_number: str, amount: int, reason: str, request_id: str) -> RefundResult:
        if type(amount) is not int or amount <= 0:
            raise ValueError("refund amount must be a positive int of rupiah")
        body = encoder.encode(
            RefundRequest(order=RefundOrder(invoice_number=invoice_number, amount=str(amount), reason=reason))
        )
        response, already_done = await self._post(self.config.refund_path, body, request_id)
        echoed = _echoed_amount(response)
        if response.decoded.order.invoice_number != invoice_number or echoed != amount:
            raise UnexpectedResponse("answer is for another refund", status=response.http_status, body=response.body)
        answer = response.decoded
        status = answer.internet_banking_payment.status
        if status != "SUCCESS":
            raise Rejected(doku_code=status, status=response.http_status)
        return RefundResult(
            request_id=request_id,
            invoice_number=invoice_number,
            amount=echoed,
            status=status,
            already_done=already_done,
            response=answer,
        )

    async def check_status(self, invoice_number: str, *, request_id: str | None = None) -> StatusResponse:
        """DOKU's view of an order (``invoice_number`` may also be the payment's Request-Id)."""
        request_id = request_id or str(uuid.uuid4())
        path = self.config.status_path_template.format(invoice_number=quote(invoice_number, safe=""))
        http = await self._send("GET", path, None, request_id)
        if http.status_code != 200:
            self._raise_for_status(http)
        self._check_response_signature(http, request_id)
        try:
            return status_response_decoder.decode(http.content)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponse(str(exc), status=http.status_code, body=http.content) from exc

    # --- transport -----------------------------------------------------------------------------

    async def _post(self, path: str, body: bytes, request_id: str) -> tuple[_Answer, bool]:
        http = await self._send("POST", path, body, request_id)
        status = http.status_code
        if not (200 <= status < 300 or status == 409):
            self._raise_for_status(http)
        self._check_response_signature(http, request_id)
        if status == 409:
            error = decode_error_answer(http.content)
            if error is not None:  # same Request-Id, different body: DOKU refuses
                raise Rejected(doku_code=error.code or "conflict", status=status)
        try:
            decoded = payment_response_decoder.decode(http.content)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponse(str(exc), status=status, body=http.content) from exc
        return _Answer(decoded=decoded, http_status=status, body=http.content), status == 409

    async def _send(self, method: str, path: str, body: bytes | None, request_id: str) -> httpx.Response:
        if not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
            raise ValueError("Request-Id must be 1 to 128 characters")
        headers = {"Request-Id": request_id}
        if body is not None:
            headers["Content-Type"] = "application/json"
        attempts = max(1, self.config.max_attempts)
        failure: Unavailable | None = None
        for attempt in range(1, attempts + 1):
            try:
                http = await self._http.request(method, path, content=body, headers=headers)
            except httpx.UnsupportedProtocol as exc:  # a configuration error: retrying cannot help
                raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
            except httpx.TransportError as exc:  # connect/read/write errors and timeouts
                failure = Unavailable(f"{type(exc).__name__}: {exc}")
                failure.__cause__ = exc
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
            else:
                if http.status_code < 500 and http.status_code != 429:
                    return http
                failure = Unavailable(f"DOKU answered {http.status_code}", status=http.status_code)
            log.warning(
                "DOKU %s %s attempt %d/%d failed: %s (Request-Id %s)",
                method,
                path,
                attempt,
                attempts,
                failure.detail,
                request_id,
            )
            if attempt < attempts:
                await self._sleep(min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1)))
        assert failure is not None
        raise failure

    def _raise_for_status(self, http: httpx.Response) -> None:
        status = http.status_code
        if 400 <= status < 500:
            error = decode_error_answer(http.content)
            code = (error.code or error.type) if error is not None else None
            message = error.message if error is not None and isinstance(error.message, str) else ""
            raise Rejected(message, doku_code=code or f"http_{status}", status=status)
        raise UnexpectedResponse(status=status, body=http.content)

    def _check_response_signature(self, http: httpx.Response, request_id: str) -> None:
        """Verify against *our* Client-Id and Request-Id, so an answer to another request fails."""
        timestamp = http.headers.get("Response-Timestamp", "")
        signature = http.headers.get("Signature", "")
        target = signing.request_target(http.request.url.raw_path.decode("ascii"))
        echoes_us = (
            http.headers.get("Client-Id", self.config.client_id) == self.config.client_id
            and http.headers.get("Request-Id", request_id) == request_id
        )
        valid = (
            bool(timestamp and signature)
            and echoes_us
            and signing.verify(
                secret_key=self.config.secret_key,
                client_id=self.config.client_id,
                request_id=request_id,
                timestamp=timestamp,
                target=target,
                body=http.content,
                signature=signature,
                timestamp_label=signing.RESPONSE_TIMESTAMP,
            )
        )
        if valid:
            return
        if self.config.reject_bad_response_signature:
            raise InvalidSignature(f"response to {target} (Request-Id {request_id}) is not signed by DOKU")
        log.warning("accepting DOKU response with a bad signature: %s (Request-Id %s)", target, request_id)


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    decoded: PaymentResponse
    http_status: int
    body: bytes


def _echoed_amount(answer: _Answer) -> int:
    try:
        return answer.decoded.order.amount_idr
    except MalformedMessage as exc:
        raise UnexpectedResponse(exc.detail, status=answer.http_status, body=answer.body) from exc


# --- notifications (DOKU -> us) ----------------------------------------------------------------------


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup over any mapping (a plain dict included)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def notification_client_id(headers: Mapping[str, str]) -> str:
    """The ``Client-Id`` a notification claims, to look up whose secret key verifies it."""
    client_id = header(headers, "Client-Id")
    if not client_id:
        raise InvalidSignature("notification without Client-Id")
    return client_id


def verify_notification(
    *,
    headers: Mapping[str, str],
    body: bytes,
    secret_key: str,
    notification_path: str,
    now: datetime,
    max_age: timedelta | None = DEFAULT_NOTIFICATION_MAX_AGE,
    max_future: timedelta = DEFAULT_NOTIFICATION_MAX_FUTURE,
) -> Notification:
    """The notification DOKU sent, after checking signature, then freshness, then shape.

    ``body`` must be the raw received bytes; ``notification_path`` the path of the notification URL
    configured at DOKU (no query string). Raises InvalidSignature, StaleTimestamp or MalformedMessage.
    """
    client_id = header(headers, "Client-Id")
    request_id = header(headers, "Request-Id")
    timestamp = header(headers, "Request-Timestamp")
    signature = header(headers, "Signature")
    if not (client_id and request_id and timestamp and signature):
        raise InvalidSignature("notification is missing a signing header")
    if not signing.verify(
        secret_key=secret_key,
        client_id=client_id,
        request_id=request_id,
        timestamp=timestamp,
        target=signing.request_target(notification_path),
        body=body,
        signature=signature,
    ):
        raise InvalidSignature("notification signature does not match")
    if max_age is not None:
        try:
            sent_at = signing.parse_timestamp(timestamp)
        except ValueError as exc:
            raise StaleTimestamp("unreadable Request-Timestamp") from exc
        if not signing.is_fresh(sent_at, now=now, max_age=max_age, max_future=max_future):
            raise StaleTimestamp(f"notification timestamp {timestamp} is outside the window")
    return decode_notification(body)
