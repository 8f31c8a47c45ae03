"""The Jenius adapter's error tree. Each class carries a stable machine-readable ``code``.

    JeniusError                 jenius_error
    ├── Unavailable             unavailable          retryable: connection error, timeout or 5xx, after
    │                                                the client's own bounded retries (``status`` when a
    │                                                5xx was the last answer)
    ├── Rejected                rejected             DOKU said no: ``doku_code`` is DOKU's own error code
    │                                                (or the payment status it reported), ``status`` the HTTP
    │                                                status
    ├── InvalidSignature        invalid_signature    a response or notification whose signature does not
    │                                                match, or whose signing headers are missing
    ├── StaleTimestamp          stale_timestamp      a correctly signed notification outside the window
    ├── UnexpectedResponse      unexpected_response  an answer we cannot interpret: ``status`` + raw ``body``
    └── MalformedMessage        malformed_message    a signed message whose body is not the documented shape

Rule: no httpx (or msgspec) exception leaves the ``jenius`` package; the client translates them here.
Only ``Unavailable`` is worth retrying with the same Request-Id; the others will answer the same again.
"""

from __future__ import annotations


class JeniusError(Exception):
    code = "jenius_error"
    retryable = False

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code


class Unavailable(JeniusError):
    code = "unavailable"
    retryable = True

    def __init__(self, detail: str = "", *, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status


class Rejected(JeniusError):
    code = "rejected"

    def __init__(self, detail: str = "", *, doku_code: str, status: int) -> None:
        super().__init__(detail or doku_code)
        self.doku_code = doku_code
        self.status = status


class InvalidSignature(JeniusError):
    code = "invalid_signature"


class StaleTimestamp(JeniusError):
    code = "stale_timestamp"


class UnexpectedResponse(JeniusError):
    code = "unexpected_response"

    def __init__(self, detail: str = "", *, status: int, body: bytes) -> None:
        super().__init__(detail or f"unexpected HTTP {status}")
        self.status = status
        self.body = body


class MalformedMessage(JeniusError):
    code = "malformed_message"
