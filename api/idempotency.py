"""HTTP idempotency: the ``Idempotency-Key`` of every POST, handed to the use case as a ``Keyed``.

Rules: the key's outcome is committed in the same transaction as the request's effect (see
``ledger.service.idempotency``); same key + same method, path, query, body-reading headers and body
→ the stored answer, byte for byte (``Idempotent-Replayed: true``); same key with a different
request → 409 ``idempotency_conflict``; while the first request with the key is between phases →
409 ``idempotency_in_progress``. Routes that move money declare ``opt={"idempotency": "required"}``
and answer 400 ``idempotency_key_required`` without a key. A refused request (4xx) is remembered
too; a 5xx is not an answer: the key's progress is kept and the next retry resumes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response

from api.problems import PROBLEM_JSON, ApiError, handle_domain_error, is_domain_error
from api.services import Services
from ledger import errors
from ledger.service.faults import InjectedCrash
from ledger.service.idempotency import Answer, Keyed, Replayed

T = TypeVar("T")
MAX_KEY_LENGTH = 255
REQUIRED = {"idempotency": "required"}  # route opt of the POSTs that move money

_encode = msgspec.json.Encoder().encode


def request_fingerprint(method: str, target: str, body: bytes) -> bytes:
    return hashlib.sha256(method.encode() + b"\0" + target.encode() + b"\0" + body).digest()


async def provide_keyed(request: Request[Any, Any, Any], services: Services, platform_id: str) -> Keyed:
    """Dependency: this request's ``Keyed`` (its key, or none)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        if request.route_handler.opt.get("idempotency") == "required":
            raise errors.IdempotencyKeyRequired("this request moves money: send an Idempotency-Key header")
    elif not key or len(key) > MAX_KEY_LENGTH:
        raise ApiError("invalid_request", f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} characters")
    # The query string is part of the request (e.g. a settlement report's column mapping), and so
    # are the headers that change how the body is read.
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    for header in ("content-type", "x-source-name"):
        target += f"\0{header}={request.headers.get(header, '')}"
    fingerprint = request_fingerprint(request.method, target, await request.body()) if key else b""
    return Keyed(
        services.db,
        platform_id,
        key,
        fingerprint,
        _unset,
        lease_s=services.settings.idempotency_lease_s,
        faults=services.faults,
        group=services.group_commit,
    )


def _unset(_: object) -> Answer:
    raise AssertionError("answer() sets the encoder")


def _response(answer: Answer, *, replayed: bool = False) -> Response[bytes]:
    return Response(
        answer.body,
        status_code=answer.status,
        media_type="application/json" if answer.status < 400 else PROBLEM_JSON,
        headers={"Idempotent-Replayed": "true"} if replayed else None,
    )


async def answer(
    request: Request[Any, Any, Any],
    keyed: Keyed,
    work: Callable[[], Awaitable[T]],
    out: Callable[[T], object] = lambda value: value,
) -> Response[Any]:
    """Run the use case under its key and answer with exactly the bytes stored for the key."""
    status = request.route_handler.status_code or 200
    keyed.encode = lambda result: Answer(status=status, body=_encode(out(result)))  # type: ignore[arg-type]
    try:
        await work()
    except Replayed as replay:
        return _response(replay.answer, replayed=True)
    except InjectedCrash:
        raise  # a test's "process died here": nothing more happens, not even releasing the key
    except Exception as exc:
        if getattr(exc, "code", "").startswith("idempotency"):
            raise  # about the key itself: nothing to remember, nothing of ours to release
        if not is_domain_error(exc):
            await keyed.abandon()
            raise
        refused = handle_domain_error(request, exc)
        if (refused.status_code or 500) >= 500:
            await keyed.abandon()
            return refused
        assert isinstance(refused.content, bytes)
        return _response(await keyed.remember(Answer(status=refused.status_code or 500, body=refused.content)))
    assert keyed.answer is not None
    return _response(keyed.answer)
