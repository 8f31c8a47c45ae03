"""Webhooks (pure): which URLs may receive events, how a delivery is signed, when it is retried.

Rules:
* An endpoint URL is absolute ``https``. Loopback (``127.0.0.0/8``, ``::1``, ``localhost``) is
  refused unless the service allows it (``SPLITLEDGER_WEBHOOKS_ALLOW_LOOPBACK=true``: the demo and
  local sandboxes), and then ``http`` is accepted for it too. Other private, link-local and
  reserved address literals are always refused (the service must not be made to call its own
  network); host names are not resolved here.
* A delivery carries ``Splitledger-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
  "<t>.<raw body>")>``. ``verify_signature`` is the receiver's check: the HMAC over the exact bytes
  received, compared in constant time, and ``t`` within ``tolerance_s`` of now (an old delivery
  replayed later fails; a replay within the window carries an event id the receiver has seen).
* A failed attempt is retried after ``RETRY_DELAYS_S`` (about 1 s, 5 s, 30 s, then growing to
  12 h), each with ±20 % jitter, for at least ``RETRY_WINDOW_S`` (3 days) after the delivery was
  created; the attempt that fails after that gives up, and the endpoint is disabled. ``scale``
  multiplies every delay and the window (tests run the whole schedule in seconds).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from ledger import errors

SIGNATURE_HEADER = "Splitledger-Signature"
DEFAULT_TOLERANCE_S = 300
RETRY_DELAYS_S: tuple[int, ...] = (1, 5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 43_200)
RETRY_WINDOW_S = 3 * 24 * 3600
JITTER = 0.2
MAX_URL_LENGTH = 2048
LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}

EndpointStatus = Literal["enabled", "disabled"]
DeliveryStatus = Literal["pending", "delivered", "failed", "cancelled"]


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint as the API shows it (never its secret)."""

    id: str
    url: str
    events: list[str]
    status: EndpointStatus
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


class CreatedEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to creating an endpoint: the only time its secret is shown."""

    id: str
    url: str
    events: list[str]
    secret: str
    status: EndpointStatus


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    attempt: int
    attempted_at: datetime
    response_status: int | None
    error: str | None
    duration_ms: int


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One event's delivery to one endpoint, with every attempt made so far (oldest first)."""

    id: int
    endpoint_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_response_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[Attempt] = []


def new_endpoint_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<t>.<body>"`` under the endpoint's secret."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: int, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> bool:
    """The receiver's check of ``Splitledger-Signature`` over the raw body received."""
    parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or not given or abs(now - int(stamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(stamp), body), given)


def retry_delay_s(failures: int, jitter: float, *, scale: float = 1.0) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1 = the first); ``jitter`` in [0, 1)."""
    base = RETRY_DELAYS_S[min(max(failures, 1), len(RETRY_DELAYS_S)) - 1]
    return base * (1 - JITTER + 2 * JITTER * jitter) * scale


def next_attempt_at(
    failures: int, created_at: datetime, now: datetime, jitter: float, *, scale: float = 1.0
) -> datetime | None:
    """When to try again after a failed attempt at ``now``; None: the window is over, give up."""
    if now - created_at >= timedelta(seconds=RETRY_WINDOW_S * scale):
        return None
    return now + timedelta(seconds=retry_delay_s(failures, jitter, scale=scale))


def is_delivered(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_internal(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(
        (address.is_private, address.is_link_local, address.is_reserved, address.is_multicast, address.is_unspecified)
    )


def check_url(url: str, *, allow_loopback: bool) -> str:
    """The endpoint URL if it may receive events; ``WebhookUrlInvalid`` (with why) if not."""
    if len(url) > MAX_URL_LENGTH:
        raise errors.WebhookUrlInvalid(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        raise errors.WebhookUrlInvalid(f"not a URL: {exc}") from exc
    if parts.scheme not in ("https", "http") or not host:
        raise errors.WebhookUrlInvalid("the URL must be absolute: https://host/path")
    if parts.username is not None or parts.password is not None:
        raise errors.WebhookUrlInvalid("the URL may not carry credentials")
    if parts.fragment:
        raise errors.WebhookUrlInvalid("the URL may not have a fragment")
    if _is_loopback(host):
        if not allow_loopback:
            raise errors.WebhookUrlInvalid(
                "loopback URLs are refused unless SPLITLEDGER_WEBHOOKS_ALLOW_LOOPBACK=true", reason="loopback"
            )
        return url
    if parts.scheme != "https":
        raise errors.WebhookUrlInvalid("webhook URLs must use https", reason="not_https")
    if _is_internal(host):
        raise errors.WebhookUrlInvalid("private, link-local and reserved addresses are refused", reason="internal")
    return url
