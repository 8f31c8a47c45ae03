"""The ``idempotency_keys`` table: per platform and key, the request's fingerprint, the phases it has
committed, who holds it, and the answer once it is done."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec


class KeyState(msgspec.Struct, frozen=True, kw_only=True):
    request_hash: bytes
    status: str  # in_progress | done
    phases: tuple[str, ...]
    owner: str | None
    leased: bool  # another execution's lease has not lapsed yet
    response_status: int | None
    response_body: bytes | None


class IdempotencyKeys:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim(self, platform_id: str, key: str, fingerprint: bytes) -> KeyState:
        """The key's row, locked for this transaction (created when new).

        A concurrent transaction inserting the same key waits here until this one ends, so two
        requests with one key never run the same phase at once.
        """
        await self.conn.execute(
            """
            INSERT INTO idempotency_keys (platform_id, key, request_hash) VALUES ($1, $2, $3)
            ON CONFLICT (platform_id, key) DO NOTHING
            """,
            platform_id,
            key,
            fingerprint,
        )
        row = await self.conn.fetchrow(
            """
            SELECT request_hash, status, phases, owner, coalesce(locked_until > now(), false) AS leased,
                   response_status, response_body
              FROM idempotency_keys WHERE platform_id = $1 AND key = $2 FOR UPDATE
            """,
            platform_id,
            key,
        )
        assert row is not None
        return _state(row)

    async def peek(self, platform_id: str, key: str) -> KeyState | None:
        row = await self.conn.fetchrow(
            """
            SELECT request_hash, status, phases, owner, coalesce(locked_until > now(), false) AS leased,
                   response_status, response_body
              FROM idempotency_keys WHERE platform_id = $1 AND key = $2
            """,
            platform_id,
            key,
        )
        return _state(row) if row is not None else None

    async def advance(self, platform_id: str, key: str, phase: str, owner: str, lease_s: float) -> None:
        await self.conn.execute(
            """
            UPDATE idempotency_keys
               SET phases = array_append(phases, $3), owner = $4,
                   locked_until = now() + make_interval(secs => $5), updated_at = now()
             WHERE platform_id = $1 AND key = $2
            """,
            platform_id,
            key,
            phase,
            owner,
            float(lease_s),
        )

    async def finish(self, platform_id: str, key: str, status: int, body: bytes) -> None:
        await self.conn.execute(
            """
            UPDATE idempotency_keys
               SET status = 'done', response_status = $3, response_body = $4, owner = NULL, locked_until = NULL,
                   updated_at = now()
             WHERE platform_id = $1 AND key = $2
            """,
            platform_id,
            key,
            status,
            body,
        )

    async def release(self, platform_id: str, key: str, owner: str) -> None:
        """Give up the lease (the request failed for a reason a retry may not hit); progress is kept."""
        await self.conn.execute(
            """
            UPDATE idempotency_keys SET owner = NULL, locked_until = NULL, updated_at = now()
             WHERE platform_id = $1 AND key = $2 AND status = 'in_progress' AND (owner IS NULL OR owner = $3)
            """,
            platform_id,
            key,
            owner,
        )
        # A key that committed nothing yet holds nothing worth keeping.
        await self.conn.execute(
            """
            DELETE FROM idempotency_keys
             WHERE platform_id = $1 AND key = $2 AND status = 'in_progress' AND phases = '{}' AND owner IS NULL
            """,
            platform_id,
            key,
        )

    async def prune(self, platform_id: str, before: datetime) -> int:
        """Forget finished keys created before ``before``; returns how many."""
        done = await self.conn.fetchval(
            """
            WITH gone AS (
                DELETE FROM idempotency_keys
                 WHERE platform_id = $1 AND created_at < $2 AND status = 'done'
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            platform_id,
            before,
        )
        return int(done or 0)


def _state(row: asyncpg.Record) -> KeyState:
    return KeyState(
        request_hash=bytes(row["request_hash"]),
        status=row["status"],
        phases=tuple(row["phases"]),
        owner=row["owner"],
        leased=row["leased"],
        response_status=row["response_status"],
        response_body=bytes(row["response_body"]) if row["response_body"] is not None else None,
    )
