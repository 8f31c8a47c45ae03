"""What every request passes before its handler runs (the app's ``before_request``).

Rules, in this order, each answered 4xx problem+json before a key is verified or a body decoded:
1. rate limits: per API key under ``/v1``, per DOKU ``Client-Id`` on the notification endpoint
   (``api.ratelimit``) → 429 ``rate_limited`` with ``Retry-After``;
2. the URL's path and query string are UTF-8 text without control characters (``ledger.text``)
   → 422 ``invalid_text``;
3. a request body is ``application/json`` (UTF-8) unless the handler lists other media types in
   ``opt["body_media_types"]`` (``None``: any, for DOKU's signed bytes) → 415 ``unsupported_media_type``;
4. every ``date``/``datetime`` query parameter of the handler lies between ``MIN_DATE`` and
   ``MAX_DATE`` (beyond them, day arithmetic and time-zone conversion overflow) → 422 ``invalid_request``.
Integers are bounded where they are declared (``api.params``); bodies in ``api.bodies``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec
from litestar import Request

from api.problems import ApiError
from api.ratelimit import TokenBuckets, retry_after
from api.settings import Settings
from ledger.text import is_clean_text

MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(9998, 12, 31)
JSON_ONLY = ("application/json",)
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class Limits:
    """The service's rate limits, built once from the settings (``None``: that limit is off)."""

    def __init__(self, settings: Settings) -> None:
        on = settings.rate_limit_enabled
        self.api_key = (
            TokenBuckets(settings.rate_limit_api_key_per_s, settings.rate_limit_api_key_burst)
            if on and settings.rate_limit_api_key_per_s > 0
            else None
        )
        self.client_id = (
            TokenBuckets(settings.rate_limit_notification_per_s, settings.rate_limit_notification_burst)
            if on and settings.rate_limit_notification_per_s > 0
            else None
        )
        self.notification_path = settings.notification_path

    def check(self, request: Request[Any, Any, Any]) -> None:
        path = request.scope["path"]
        if path == self.notification_path:
            buckets, key, what = self.client_id, request.headers.get("client-id", ""), "DOKU Client-Id"
        elif path.startswith("/v1/"):
            buckets, key, what = self.api_key, request.headers.get("authorization", ""), "API key"
        else:
            return
        if buckets is None:
            return
        wait = buckets.take(key)
        if wait > 0:
            raise ApiError(
                "rate_limited",
                f"too many requests for this {what}",
                headers={"Retry-After": retry_after(wait)},
                retry_after_s=int(retry_after(wait)),
            )


async def guard(request: Request[Any, Any, Any]) -> None:
    limits: Limits | None = getattr(request.app.state, "limits", None)
    if limits is not None:
        limits.check(request)
    check_url_text(request.scope.get("raw_path") or request.scope["path"].encode(), request.scope["query_string"])
    if request.method in _WITH_BODY:
        await check_media_type(request)
    check_dates(request)


def check_url_text(raw_path: bytes, query_string: bytes) -> None:
    for part, raw in (("path", raw_path), ("query", query_string.replace(b"+", b" "))):
        try:
            text = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            text = "\ud800"  # not UTF-8: as unacceptable as a control character
        if not is_clean_text(text):
            raise ApiError(
                "invalid_text",
                f"the URL's {part} holds a control character or is not UTF-8",
                errors=[{"code": "invalid_text", "path": part, "detail": "no control characters, UTF-8 only"}],
            )


async def check_media_type(request: Request[Any, Any, Any]) -> None:
    accepted = request.route_handler.opt.get("body_media_types", JSON_ONLY)
    if accepted is None or not (await request.body()).strip():
        return
    given = request.headers.get("content-type", "")
    media_type, _, params = given.partition(";")
    media_type = media_type.strip().lower()
    charset = next((p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";") if "=" in p), "utf-8")
    if "application/json" in accepted and (media_type.endswith("+json") and media_type.startswith("application/")):
        media_type = "application/json"
    if media_type not in accepted or charset not in ("utf-8", "utf8"):
        raise ApiError(
            "unsupported_media_type",
            f"send the body as {' or '.join(accepted)} (UTF-8), not {given or 'without a Content-Type'}",
            accepted=list(accepted),
        )


def check_dates(request: Request[Any, Any, Any]) -> None:
    params = _date_parameters(request.route_handler)
    if not params:
        return
    query = request.query_params
    for name, type_ in params.items():
        raw = query.get(name)
        if raw is None:
            continue
        try:
            value: date = msgspec.convert(raw, type_, strict=False)
        except msgspec.ValidationError:
            continue  # not a date at all: the handler's own decoding says so
        day = value.date() if isinstance(value, datetime) else value
        if not MIN_DATE <= day <= MAX_DATE:
            raise ApiError(
                "invalid_request",
                f"{name} must lie between {MIN_DATE} and {MAX_DATE}",
                errors=[{"code": "out_of_range", "path": f"query.{name}", "detail": f"{MIN_DATE}..{MAX_DATE}"}],
            )


def _date_parameters(handler: Any) -> dict[str, type]:
    """The handler's parameters typed ``date`` or ``datetime`` (optional or not)."""
    found: dict[str, type] = {}
    for name, field in handler.parsed_fn_signature.parameters.items():
        types = [t.annotation for t in field.inner_types] if field.is_union else [field.annotation]
        dated = [t for t in types if isinstance(t, type) and issubclass(t, date)]
        if dated:
            found[name] = datetime if any(issubclass(t, datetime) for t in dated) else date
    return found
