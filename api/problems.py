"""One table from domain errors to RFC 9457 ``application/problem+json`` answers.

Rule: every error a client can see has a stable machine-readable ``code`` (the member the tests and
integrators key on) and an HTTP status chosen here, in one place. Anything unexpected becomes a 500
whose body says nothing about internals; it is logged with the request id.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException

from api.middleware import SANE_REQUEST_ID  # the same rule as for matched routes
from jenius.errors import JeniusError
from ledger.errors import LedgerError
from ledger.store.driver import is_unavailable

log = logging.getLogger("splitledger.api")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = "1"  # what a 503 tells the client to wait: the database is usually back within seconds

# code -> (HTTP status, title)
PROBLEMS: dict[str, tuple[int, str]] = {
    # request shape
    "malformed_json": (400, "The request body is not valid JSON (in UTF-8)"),
    "nesting_too_deep": (400, "The request body nests arrays and objects too deep"),
    "unsupported_media_type": (415, "This endpoint reads application/json"),
    "invalid_request": (422, "The request does not match the schema"),
    "unknown_field": (422, "The request has a field this endpoint does not know"),
    "invalid_text": (422, "Text may not hold control characters or invalid UTF-8"),
    "rate_limited": (429, "Too many requests; retry after the time in Retry-After"),
    "unauthorized": (401, "Missing or invalid API key"),
    "not_found": (404, "No such resource"),
    "platform_exists": (409, "A platform with this id exists"),
    "method_not_allowed": (405, "Method not allowed"),
    "idempotency_conflict": (409, "Idempotency-Key reused with a different request"),
    "idempotency_in_progress": (409, "A request with this Idempotency-Key is still being processed"),
    "idempotency_key_required": (400, "This request moves money: send an Idempotency-Key header"),
    # ledger
    "invalid_entry": (422, "The journal entry is invalid"),
    "unknown_account": (404, "Unknown ledger account"),
    "account_exists": (409, "The account exists with different attributes"),
    "insufficient_funds": (422, "Insufficient funds"),
    "entry_not_found": (404, "Unknown journal entry"),
    "not_sealed_yet": (409, "Not sealed into a block yet; the sealer runs every second"),
    "database_unavailable": (503, "The database is unavailable; retry shortly"),
    "ledger_invariant_violated": (500, "Internal error: the ledger refused an inconsistent write"),
    # split engine
    "split_invalid": (422, "The split does not add up"),
    "split_error": (422, "The split cannot be computed"),
    "reversal_rejected": (422, "The refund cannot be split between the parties"),
    "reversal_wrong_direction": (422, "A per-party refund amount has the wrong sign"),
    "unknown_party": (422, "Unknown party in the per-party refund amounts"),
    "non_positive_amount": (422, "The amount must be positive"),
    "refund_exceeds_captured": (422, "The refund exceeds what is left to refund"),
    "reversal_exceeds_allocation": (422, "The refund takes more from a party than it was allocated"),
    "explicit_amounts_do_not_sum": (422, "Per-party refund amounts do not sum to the refund amount"),
    "settlement_instruction_invalid": (422, "DOKU's split instruction cannot be built"),
    # marketplace
    "unknown_seller": (422, "Unknown seller"),
    "seller_exists": (409, "A seller with this id exists"),
    "reserved_seller_id": (422, "That seller id is reserved"),
    "seller_not_found": (404, "Unknown seller"),
    "order_exists": (409, "An order with this invoice number exists"),
    "invalid_invoice_number": (422, "Invoice numbers are 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"),
    "order_not_found": (404, "Unknown order"),
    "order_not_captured": (409, "The order has not been captured"),
    "amount_mismatch": (422, "Amounts do not match"),
    "refund_not_found": (404, "Unknown refund"),
    "refund_not_pending": (409, "The refund is not pending"),
    "refund_not_in_flight": (409, "The refund is not a deposit refund waiting for DOKU's Refund Service"),
    "unknown_line_item": (422, "The refund names no line item of the order (or one twice)"),
    "line_item_quantity_exceeded": (422, "More of a line item than is left to refund"),
    "deposit_refund_out_of_range": (422, "DOKU's Refund Service does not pay refunds of this amount"),
    "deposit_insufficient": (422, "The refund deposit does not cover the refund"),
    "exception_action_invalid": (409, "The action does not apply to this reconciliation exception"),
    "payout_exceeds_available": (422, "The payout exceeds the seller's available balance"),
    "payout_not_found": (404, "Unknown payout"),
    "payout_not_pending": (409, "The payout is not pending"),
    "settlement_report_invalid": (422, "The settlement report cannot be read"),
    "settlement_report_not_found": (404, "Unknown settlement report"),
    "gateway_not_configured": (409, "The platform has no DOKU credentials configured"),
    "client_id_taken": (409, "This DOKU Client-Id is registered to another platform"),
    "invalid_base_url": (422, "DOKU's base URL must be https (http only for a loopback sandbox)"),
    "invalid_refund_path": (422, "The refund path must be a plain absolute path"),
    # events, webhooks, API keys
    "unknown_event_type": (422, "Unknown event type"),
    "event_not_found": (404, "Unknown event"),
    "invalid_webhook_url": (422, "This URL cannot receive webhooks"),
    "webhook_endpoint_not_found": (404, "Unknown webhook endpoint"),
    "too_many_webhook_endpoints": (409, "The platform has as many webhook endpoints as it may have"),
    "api_key_not_found": (404, "Unknown API key"),
    "last_api_key": (409, "This is the platform's last live API key: create another one first"),
    "invalid_signature": (401, "Invalid DOKU signature"),
    "stale_timestamp": (401, "DOKU request timestamp outside the accepted window"),
    "unknown_client_id": (401, "Unknown DOKU Client-Id"),
    "malformed_message": (400, "Malformed DOKU message"),
    # gateway
    "unavailable": (503, "DOKU is unavailable; retry later"),
    "rejected": (502, "DOKU rejected the request"),
    "unexpected_response": (502, "DOKU answered unexpectedly"),
    "internal_error": (500, "Internal error"),
}


class ApiError(Exception):
    """An error raised by the API layer itself (not a domain error); ``errors`` lists what is wrong
    where (``{"code", "path", "detail"}``), ``headers`` go on the answer (``Retry-After``)."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


# Every domain error tree carries a stable ``code``; the table above maps codes to statuses.
DOMAIN_ERRORS: tuple[type[Exception], ...] = (LedgerError, JeniusError, ApiError)


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None


def problem(
    request: Request[Any, Any, Any] | None,
    code: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    default_status, title = PROBLEMS.get(code, (status or 400, code.replace("_", " ")))
    status = status or default_status
    request_id = request.scope.get("state", {}).get("request_id") if request is not None else None
    # The request-context middleware adds X-Request-Id to every answer of a matched route; errors the
    # router raises itself (no such path or method) never pass through it, so they get an id here.
    headers = {"Retry-After": RETRY_AFTER_S, **(headers or {})} if status == 503 else dict(headers or {})
    if request is not None and request_id is None:
        incoming = request.headers.get("x-request-id")
        request_id = incoming if incoming and SANE_REQUEST_ID.match(incoming) else secrets.token_hex(8)
        request.scope.setdefault("state", {})["request_id"] = request_id
        headers["X-Request-Id"] = request_id
    body = Problem(
        type=f"https://splitledger.dev/problems/{code.replace('_', '-')}",
        title=title,
        status=status,
        code=code,
        detail=detail,
        instance=request.url.path if request is not None else None,
        request_id=request_id,
        errors=errors,
        extra=extra or None,
    )
    return Response(msgspec.json.encode(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _problems_of(exc: Exception) -> list[dict[str, Any]] | None:
    found = getattr(exc, "problems", None)
    if not found:
        return None
    out = []
    for item in found:
        if isinstance(item, tuple):
            out.append({"code": item[0], "detail": item[1]})
        elif isinstance(item, msgspec.Struct):
            out.append(msgspec.structs.asdict(item))
        else:
            out.append({"detail": str(item)})
    return out


def handle_domain_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    code = getattr(exc, "code", "internal_error")
    if code not in PROBLEMS:
        log.warning("error code %s has no problem mapping", code)
    detail = getattr(exc, "detail", None) or str(exc) or None
    extra = {k: v for k, v in (getattr(exc, "extra", None) or getattr(exc, "context", None) or {}).items()}
    for attr in ("doku_code", "status"):
        value = getattr(exc, attr, None)
        if value is not None and isinstance(value, (str, int)) and attr != "status":
            extra[attr] = value
    return problem(
        request,
        code,
        detail if isinstance(detail, str) else None,
        errors=getattr(exc, "errors", None) or _problems_of(exc),
        extra=_jsonable(extra),
        headers=getattr(exc, "headers", None),
    )


def _jsonable(extra: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in extra.items():
        try:
            msgspec.json.encode(value)
        except TypeError:
            value = str(value)
        out[key] = value
    return out


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        errors = exc.extra if isinstance(exc.extra, list) else None
        return problem(request, "invalid_request", str(exc.__cause__ or exc.detail), errors=errors)
    if isinstance(exc, NotAuthorizedException):
        return problem(request, "unauthorized", exc.detail)
    cause = exc.__cause__
    while cause is not None and not isinstance(cause, msgspec.DecodeError):
        cause = cause.__cause__
    if cause is not None or (exc.status_code == 400 and "malformed" in str(exc.detail).lower()):
        return problem(request, "malformed_json", str(exc.detail))
    code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(exc.status_code)
    if code:
        return problem(request, code, exc.detail)
    return problem(request, f"http_{exc.status_code}", exc.detail, status=exc.status_code)


def is_domain_error(exc: BaseException) -> bool:
    return isinstance(exc, DOMAIN_ERRORS)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    request_id = request.scope.get("state", {}).get("request_id")
    if is_unavailable(exc):
        # A driver error that escaped the store's seam: still an outage, not a bug in the request.
        log.warning("database unavailable outside the store seam", extra={"request_id": request_id})
        return problem(request, "database_unavailable", type(exc).__name__)
    log.exception("unhandled error", extra={"request_id": request_id, "path": request.url.path})
    return problem(request, "internal_error", None)
