"""DOKU's non-SNAP HMAC-SHA256 message signature, as pure functions over bytes and strings.

Rule: a signature covers the exact bytes that travel. The digest is computed over the body as sent
(or as received), never over a re-serialisation of it, and signatures are compared in constant time.

String to sign (lines joined by ``\\n``, no trailing newline, no space after the colon)::

    Client-Id:<Client-Id>
    Request-Id:<Request-Id>
    Request-Timestamp:<YYYY-MM-DDTHH:MM:SSZ>      (Response-Timestamp:... when signing a response)
    Request-Target:<path only, no query string>
    Digest:<base64(SHA-256(body))>                 (dropped for GET requests)

``Signature`` header = ``HMACSHA256=`` + base64(HMAC-SHA256(secret key as UTF-8, string to sign)).

Three uses, one function:
- requests to DOKU: timestamp from ``Request-Timestamp``, target = the DOKU path;
- DOKU's responses: timestamp from ``Response-Timestamp`` (label ``Response-Timestamp``), target = the
  path we called, digest over the response body;
- DOKU's notifications to us: target = the path of *our* notification URL, digest over the raw
  received bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

PREFIX = "HMACSHA256="
REQUEST_TIMESTAMP = "Request-Timestamp"
RESPONSE_TIMESTAMP = "Response-Timestamp"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def digest(body: bytes) -> str:
    """Standard base64 (padded) of SHA-256 over ``body``; no ``SHA-256=`` prefix."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def string_to_sign(
    *,
    client_id: str,
    request_id: str,
    timestamp: str,
    target: str,
    digest: str | None,
    timestamp_label: str = REQUEST_TIMESTAMP,
) -> str:
    lines = [
        f"Client-Id:{client_id}",
        f"Request-Id:{request_id}",
        f"{timestamp_label}:{timestamp}",
        f"Request-Target:{target}",
    ]
    if digest is not None:
        lines.append(f"Digest:{digest}")
    return "\n".join(lines)


def sign(
    *,
    secret_key: str,
    client_id: str,
    request_id: str,
    timestamp: str,
    target: str,
    body: bytes | None,
    timestamp_label: str = REQUEST_TIMESTAMP,
) -> str:
    """The ``Signature`` header value. ``body=None`` means a GET: no ``Digest`` line."""
    text = string_to_sign(
        client_id=client_id,
        request_id=request_id,
        timestamp=timestamp,
        target=target,
        digest=None if body is None else digest(body),
        timestamp_label=timestamp_label,
    )
    mac = hmac.new(secret_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()
    return PREFIX + base64.b64encode(mac).decode("ascii")


def verify(
    *,
    secret_key: str,
    client_id: str,
    request_id: str,
    timestamp: str,
    target: str,
    body: bytes | None,
    signature: str,
    timestamp_label: str = REQUEST_TIMESTAMP,
) -> bool:
    """True when ``signature`` is the one we would compute; compared in constant time."""
    expected = sign(
        secret_key=secret_key,
        client_id=client_id,
        request_id=request_id,
        timestamp=timestamp,
        target=target,
        body=body,
        timestamp_label=timestamp_label,
    )
    # compare_digest on bytes: a non-ASCII str would raise TypeError instead of answering False.
    return hmac.compare_digest(expected.encode("utf-8"), signature.encode("utf-8", "replace"))


def format_timestamp(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, fractional seconds dropped. Naive datetimes are refused."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    return dt.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Inverse of :func:`format_timestamp`; raises ``ValueError`` on any other shape."""
    if len(text) != 20:
        raise ValueError(f"not a DOKU timestamp: {text!r}")
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def is_fresh(timestamp: datetime, *, now: datetime, max_age: timedelta, max_future: timedelta) -> bool:
    """Within ``max_age`` in the past and ``max_future`` (clock skew) in the future of ``now``."""
    return now - max_age <= timestamp <= now + max_future


def request_target(raw_path: str) -> str:
    """The path component of a raw request path or URL path: the query string is not signed."""
    return raw_path.split("?", 1)[0]
