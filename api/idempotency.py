"""HTTP idempotency for every POST: ``Idempotency-Key`` replays the first answer.

Rules: same key + same method, path, query, body-reading headers and body → the stored answer,
byte for byte; same key with a different request → 409 ``idempotency_conflict``; a key whose first
request is still running → 409 ``idempotency_in_progress`` (a claim older than
``ABANDONED_AFTER_S`` was left by a process that died, and the next request with the key runs
it). Answers with 5xx are not stored (the key is released), so a retry after an outage runs the
request again. Keys are per platform.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import asyncpg
from litestar import Request, Response

from api.problems import ApiError

MAX_KEY_LENGTH = 255
# Longer than any request can take (DOKU calls time out after 15 s and are tried 3 times).
ABANDONED_AFTER_S = 300


def request_fingerprint(method: str, path: str, body: bytes) -> bytes:
    return hashlib.sha256(method.encode() + b"\0" + path.encode() + b"\0" + body).digest()


async def idempotent(
    request: Request, pool: asyncpg.Pool, platform_id: str, run: Callable[[], Awaitable[Response]]
) -> Response:
    key = request.headers.get("idempotency-key")
    if key is None:
        return await run()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ApiError("invalid_request", f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} characters")
    # The query string is part of the request (e.g. a settlement report's column mapping).
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    # So are the headers that change how the body is read.
    for header in ("content-type", "x-source-name"):
        target += f"\0{header}={request.headers.get(header, '')}"
    fingerprint = request_fingerprint(request.method, target, await request.body())
    inserted = await pool.fetchval(
        """
        INSERT INTO idempotency_keys (platform_id, key, request_hash) VALUES ($1, $2, $3)
        ON CONFLICT (platform_id, key) DO NOTHING RETURNING true
        """,
        platform_id,
        key,
        fingerprint,
    )
    if not inserted:
        row = await pool.fetchrow(
            "SELECT request_hash, status, response_status, response_body FROM idempotency_keys "
            "WHERE platform_id = $1 AND key = $2",
            platform_id,
            key,
        )
        if row is None:  # released between our insert and select: treat as in progress
            raise ApiError("idempotency_in_progress", "retry shortly")
        if bytes(row["request_hash"]) != fingerprint:
            raise ApiError("idempotency_conflict", "this Idempotency-Key was used for a different request")
        if row["status"] != "done" and not await _take_over_abandoned(pool, platform_id, key):
            raise ApiError("idempotency_in_progress", "the first request with this key is still running")
        if row["status"] != "done":
            return await _run_and_remember(request, pool, platform_id, key, run)
        return Response(
            bytes(row["response_body"]),
            status_code=row["response_status"],
            media_type="application/json" if row["response_status"] < 400 else "application/problem+json",
            headers={"Idempotent-Replayed": "true"},
        )
    return await _run_and_remember(request, pool, platform_id, key, run)


async def _take_over_abandoned(pool: asyncpg.Pool, platform_id: str, key: str) -> bool:
    """A claim older than any request can run belongs to a process that died: take it over."""
    return bool(
        await pool.fetchval(
            """
            UPDATE idempotency_keys SET created_at = now()
             WHERE platform_id = $1 AND key = $2 AND status = 'in_progress'
               AND created_at < now() - make_interval(secs => $3)
            RETURNING true
            """,
            platform_id,
            key,
            float(ABANDONED_AFTER_S),
        )
    )


async def _run_and_remember(
    request: Request, pool: asyncpg.Pool, platform_id: str, key: str, run: Callable[[], Awaitable[Response]]
) -> Response:
    try:
        response = await run()
    except ApiError as exc:
        if exc.code.startswith("idempotency"):
            await _release(pool, platform_id, key)
            raise
        await _store_error(request, pool, platform_id, key, exc)
        raise
    except Exception as exc:
        from api.problems import PROBLEMS

        status = PROBLEMS.get(getattr(exc, "code", ""), (500, ""))[0]
        if status >= 500:
            await _release(pool, platform_id, key)
        else:
            await _store_error(request, pool, platform_id, key, exc)
        raise
    body = response.content if isinstance(response.content, bytes) else None
    if body is None or response.status_code >= 500:
        await _release(pool, platform_id, key)
        return response
    await _remember(pool, platform_id, key, response.status_code, body)
    return response


async def _remember(pool: asyncpg.Pool, platform_id: str, key: str, status: int, body: bytes) -> None:
    await pool.execute(
        "UPDATE idempotency_keys SET status = 'done', response_status = $3, response_body = $4 "
        "WHERE platform_id = $1 AND key = $2",
        platform_id,
        key,
        status,
        body,
    )


async def _store_error(request: Request, pool: asyncpg.Pool, platform_id: str, key: str, exc: Exception) -> None:
    """A 4xx answer is part of the first answer too: replay it for the same request."""
    from api.problems import handle_domain_error

    response = handle_domain_error(request, exc)
    await _remember(pool, platform_id, key, response.status_code, response.content)


async def _release(pool: asyncpg.Pool, platform_id: str, key: str) -> None:
    await pool.execute("DELETE FROM idempotency_keys WHERE platform_id = $1 AND key = $2", platform_id, key)
