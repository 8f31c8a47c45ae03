"""The ``webhook_endpoints``, ``webhook_deliveries`` and ``webhook_attempts`` tables (SQL only).

Rules (what they mean: ``ledger.webhooks``; who runs them: ``ledger.service.webhooks``):
* Deliveries are created by the outbox's fan-out (``ledger.store.events``) and by ``redeliver``.
* ``claim`` hands the relay due deliveries under a lease: only the oldest pending delivery (by the
  event's ``seq``) of a chain per endpoint is ever due (per-order ordering), a leased one is skipped until its lease
  lapses, and ``FOR UPDATE SKIP LOCKED`` keeps two relays from claiming the same row.
* ``record_*`` only apply while the lease is still the claimer's (a lapsed lease taken over by
  another relay makes the late answer a no-op; its attempt is still logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec

from ledger import errors
from ledger.webhooks import Attempt, Delivery, WebhookEndpoint

_ENDPOINT_COLUMNS = "endpoint_id, url, events, status, created_at, disabled_at, disabled_reason"


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery the relay may send now: where, with which secret, what bytes."""

    platform_id: str
    delivery_id: int
    endpoint_id: str
    url: str
    secret: str
    event_id: str
    body: bytes
    attempt_count: int
    created_at: datetime
    claimed_at: datetime
    lease: str


def _endpoint(row: asyncpg.Record) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row["endpoint_id"],
        url=row["url"],
        events=list(row["events"]),
        status=row["status"],
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
        disabled_reason=row["disabled_reason"],
    )


class WebhooksTable:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # -- endpoints --------------------------------------------------------------------------

    async def add_endpoint(
        self, platform_id: str, endpoint_id: str, url: str, events: Sequence[str], secret: str
    ) -> WebhookEndpoint:
        row = await self.conn.fetchrow(
            f"""
            INSERT INTO webhook_endpoints (platform_id, endpoint_id, url, events, secret)
            VALUES ($1, $2, $3, $4, $5) RETURNING {_ENDPOINT_COLUMNS}
            """,
            platform_id,
            endpoint_id,
            url,
            list(events),
            secret,
        )
        return _endpoint(row)

    async def count_live(self, platform_id: str) -> int:
        """Endpoints not deleted, counted with the platform's row locked (creations one at a time)."""
        await self.conn.execute("SELECT 1 FROM platforms WHERE platform_id = $1 FOR UPDATE", platform_id)
        count: int = await self.conn.fetchval(
            "SELECT count(*) FROM webhook_endpoints WHERE platform_id = $1 AND status <> 'deleted'", platform_id
        )
        return count

    async def endpoints(self, platform_id: str) -> list[WebhookEndpoint]:
        rows = await self.conn.fetch(
            f"""
            SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints
             WHERE platform_id = $1 AND status <> 'deleted' ORDER BY created_at, endpoint_id
            """,
            platform_id,
        )
        return [_endpoint(r) for r in rows]

    async def endpoint(self, platform_id: str, endpoint_id: str, *, for_update: bool = False) -> WebhookEndpoint:
        row = await self.conn.fetchrow(
            f"""
            SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints
             WHERE platform_id = $1 AND endpoint_id = $2 AND status <> 'deleted'
            """
            + (" FOR UPDATE" if for_update else ""),
            platform_id,
            endpoint_id,
        )
        if row is None:
            raise errors.WebhookEndpointNotFound(f"no webhook endpoint {endpoint_id!r}", endpoint_id=endpoint_id)
        return _endpoint(row)

    async def close_endpoint(
        self, platform_id: str, endpoint_id: str, status: str, reason: str
    ) -> WebhookEndpoint | None:
        """Disable or delete an endpoint and cancel what it still had to receive; None if it was not enabled."""
        row = await self.conn.fetchrow(
            f"""
            UPDATE webhook_endpoints SET status = $3, disabled_at = coalesce(disabled_at, (SELECT now())),
                   disabled_reason = coalesce(disabled_reason, $4)
             WHERE platform_id = $1 AND endpoint_id = $2 AND status <> 'deleted'
               AND ($3 = 'deleted' OR status = 'enabled')
            RETURNING {_ENDPOINT_COLUMNS}
            """,
            platform_id,
            endpoint_id,
            status,
            reason,
        )
        await self.conn.execute(
            """
            UPDATE webhook_deliveries SET status = 'cancelled', locked_until = NULL, lease = NULL
             WHERE platform_id = $1 AND endpoint_id = $2 AND status = 'pending'
            """,
            platform_id,
            endpoint_id,
        )
        return _endpoint(row) if row is not None else None

    # -- deliveries -------------------------------------------------------------------------

    async def redeliver(
        self, platform_id: str, event_id: str, seq: int, type_: str, chain: str, endpoint_id: str | None
    ) -> list[int]:
        """Deliver the event again (now) to every enabled endpoint subscribed to it, or to
        ``endpoint_id`` alone; a delivery still pending is made due now rather than doubled."""
        due = await self.conn.fetch(
            """
            UPDATE webhook_deliveries SET next_attempt_at = now()
             WHERE platform_id = $1 AND event_id = $2 AND status = 'pending'
               AND ($3::text IS NULL OR endpoint_id = $3)
            RETURNING delivery_id
            """,
            platform_id,
            event_id,
            endpoint_id,
        )
        new = await self.conn.fetch(
            """
            INSERT INTO webhook_deliveries (platform_id, endpoint_id, event_id, seq, chain)
            SELECT w.platform_id, w.endpoint_id, $2, $5, $6 FROM webhook_endpoints w
             WHERE w.platform_id = $1 AND w.status = 'enabled'
               AND ($3::text IS NULL OR w.endpoint_id = $3)
               AND ($3::text IS NOT NULL OR $4 = ANY (w.events) OR '*' = ANY (w.events))
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                WHERE d.platform_id = w.platform_id AND d.endpoint_id = w.endpoint_id
                                  AND d.event_id = $2
                                  AND d.status = 'pending')
             ORDER BY w.endpoint_id
            RETURNING delivery_id
            """,
            platform_id,
            event_id,
            endpoint_id,
            type_,
            seq,
            chain,
        )
        return sorted(r["delivery_id"] for r in [*due, *new])

    async def due_platforms(self, limit: int) -> list[str]:
        """Platforms with a delivery due, the longest-waiting first (a plain read: on a cluster it
        may span every shard; the claims that lock rows are then made one platform at a time)."""
        rows = await self.conn.fetch(
            """
            SELECT platform_id FROM webhook_deliveries
             WHERE status = 'pending' AND next_attempt_at <= now()
               AND (locked_until IS NULL OR locked_until <= now())
             GROUP BY platform_id
             ORDER BY min(next_attempt_at), platform_id
             LIMIT $1
            """,
            limit,
        )
        return [r["platform_id"] for r in rows]

    async def claim(self, platform_id: str, limit: int, lease: str, lease_s: float) -> list[Claimed]:
        """One platform's due deliveries, leased for ``lease_s`` (one platform's rows: a statement
        that locks rows never spans platforms, so on a cluster it stays on one shard group)."""
        rows = await self.conn.fetch(
            """
            WITH due AS (
                SELECT d.platform_id, d.delivery_id
                  FROM webhook_deliveries d
                 WHERE d.platform_id = $4 AND d.status = 'pending' AND d.next_attempt_at <= now()
                   AND (d.locked_until IS NULL OR d.locked_until <= now())
                   AND NOT EXISTS (
                       SELECT 1 FROM webhook_deliveries p
                        WHERE p.platform_id = d.platform_id AND p.endpoint_id = d.endpoint_id
                          AND p.chain = d.chain AND p.status = 'pending' AND p.seq < d.seq)
                 ORDER BY d.next_attempt_at, d.delivery_id
                 LIMIT $1
                   FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE webhook_deliveries d
               SET locked_until = now() + make_interval(secs => $3), lease = $2
              FROM due, webhook_endpoints w, events e
             WHERE d.platform_id = $4 AND d.platform_id = due.platform_id AND d.delivery_id = due.delivery_id
               AND w.platform_id = d.platform_id AND w.endpoint_id = d.endpoint_id AND w.status = 'enabled'
               AND e.platform_id = d.platform_id AND e.event_id = d.event_id
            RETURNING d.platform_id, d.delivery_id, d.endpoint_id, w.url, w.secret, e.event_id, e.body,
                      d.attempt_count, d.created_at, d.locked_until
            """,
            limit,
            lease,
            lease_s,
            platform_id,
        )
        return [
            Claimed(
                platform_id=r["platform_id"],
                delivery_id=r["delivery_id"],
                endpoint_id=r["endpoint_id"],
                url=r["url"],
                secret=r["secret"],
                event_id=r["event_id"],
                body=r["body"],
                attempt_count=r["attempt_count"],
                created_at=r["created_at"],
                claimed_at=r["locked_until"] - timedelta(seconds=lease_s),  # the claim's now()
                lease=lease,
            )
            for r in rows
        ]

    async def record_attempt(
        self,
        claimed: Claimed,
        *,
        response_status: int | None,
        error: str | None,
        duration_ms: int,
        outcome: str,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Store one attempt and what it means (``outcome``: delivered, retry or failed); False when
        the lease was lost meanwhile (another relay took the delivery over)."""
        row = await self.conn.fetchrow(
            """
            UPDATE webhook_deliveries
               SET attempt_count = attempt_count + 1, last_attempt_at = now(), last_response_status = $4,
                   last_error = $5, locked_until = NULL, lease = NULL,
                   status = coalesce($6::text, status),
                   delivered_at = now() + CASE WHEN $6::text = 'delivered' THEN interval '0' END,
                   next_attempt_at = coalesce($7, next_attempt_at)
             WHERE platform_id = $1 AND delivery_id = $2 AND lease = $3 AND status = 'pending'
            RETURNING attempt_count
            """,
            claimed.platform_id,
            claimed.delivery_id,
            claimed.lease,
            response_status,
            error,
            outcome if outcome in ("delivered", "failed") else None,  # the end state, or still pending
            next_attempt_at,
        )
        attempt = row["attempt_count"] if row is not None else None
        if attempt is None:  # the lease was lost: the attempt still made is recorded after the others
            attempt = await self.conn.fetchval(
                "SELECT coalesce(max(attempt), 0) + 1 FROM webhook_attempts"
                " WHERE platform_id = $1 AND delivery_id = $2",
                claimed.platform_id,
                claimed.delivery_id,
            )
        # VALUES, not INSERT … SELECT: on Citus a router insert, committed without two phases.
        await self.conn.execute(
            """
            INSERT INTO webhook_attempts (platform_id, delivery_id, attempt, response_status, error, duration_ms)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT DO NOTHING
            """,
            claimed.platform_id,
            claimed.delivery_id,
            attempt,
            response_status,
            error,
            duration_ms,
        )
        return row is not None

    async def deliveries(
        self,
        platform_id: str,
        *,
        endpoint_id: str | None = None,
        delivery_ids: Sequence[int] | None = None,
        before: int | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Deliveries newest first, each with its attempts."""
        rows = await self.conn.fetch(
            """
            SELECT d.delivery_id, d.endpoint_id, e.event_id, e.type, d.status, d.attempt_count,
                   CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
                   d.last_attempt_at, d.last_response_status, d.last_error, d.delivered_at, d.created_at
              FROM webhook_deliveries d
              JOIN events e ON e.platform_id = d.platform_id AND e.event_id = d.event_id
             WHERE d.platform_id = $1
               AND ($2::text IS NULL OR d.endpoint_id = $2)
               AND ($3::bigint[] IS NULL OR d.delivery_id = ANY ($3))
               AND ($4::bigint IS NULL OR d.delivery_id < $4)
               AND ($5::text IS NULL OR d.status = $5)
             ORDER BY d.delivery_id DESC
             LIMIT $6
            """,
            platform_id,
            endpoint_id,
            list(delivery_ids) if delivery_ids is not None else None,
            before,
            status,
            limit,
        )
        ids = [r["delivery_id"] for r in rows]
        attempts: dict[int, list[Attempt]] = {i: [] for i in ids}
        for a in await self.conn.fetch(
            """
            SELECT delivery_id, attempt, attempted_at, response_status, error, duration_ms FROM webhook_attempts
             WHERE platform_id = $1 AND delivery_id = ANY ($2::bigint[]) ORDER BY delivery_id, attempt
            """,
            platform_id,
            ids,
        ):
            attempts[a["delivery_id"]].append(
                Attempt(
                    attempt=a["attempt"],
                    attempted_at=a["attempted_at"],
                    response_status=a["response_status"],
                    error=a["error"],
                    duration_ms=a["duration_ms"],
                )
            )
        return [
            Delivery(
                id=r["delivery_id"],
                endpoint_id=r["endpoint_id"],
                event_id=r["event_id"],
                event_type=r["type"],
                status=r["status"],
                attempt_count=r["attempt_count"],
                next_attempt_at=r["next_attempt_at"],
                last_attempt_at=r["last_attempt_at"],
                last_response_status=r["last_response_status"],
                last_error=r["last_error"],
                delivered_at=r["delivered_at"],
                created_at=r["created_at"],
                attempts=attempts[r["delivery_id"]],
            )
            for r in rows
        ]
