"""The ``events`` table: the outbox every use case writes its events to, and the feed read from it.

Rules (the guarantee and why it holds: docs/events.md):
* ``emit`` only remembers the event; ``Database.transaction`` calls ``flush`` as the last
  statement of the unit of work, so the events commit or roll back with the change.
* ``flush`` takes the platform's next positions from ``event_streams`` (its row stays locked until
  COMMIT), writes the events and fans them out to the platform's enabled webhook endpoints, all in
  one statement. Platforms are flushed in sorted order (the capture batcher writes several), and
  the stream row is the last lock a transaction takes, so it cannot be part of a deadlock.
* Positions are per platform, contiguous and in commit order: the feed is read by position.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
import msgspec

from ledger.events import NewEvent, encode_event, new_event_id

_FLUSH = """
WITH stream AS (
    INSERT INTO event_streams AS s (platform_id, last_position) VALUES ($1, cardinality($2::text[]))
    ON CONFLICT (platform_id) DO UPDATE SET last_position = s.last_position + EXCLUDED.last_position
    RETURNING s.last_position - cardinality($2::text[]) AS base
), written AS (
    INSERT INTO events (platform_id, position, event_id, type, chain, created_at, body)
    SELECT $1, stream.base + e.n, e.event_id, e.type, e.chain, $6, e.body
      FROM stream, unnest($2::text[], $3::text[], $4::text[], $5::bytea[]) WITH ORDINALITY
           AS e(event_id, type, chain, body, n)
    RETURNING position, type, chain
)
INSERT INTO webhook_deliveries (platform_id, endpoint_id, position, chain)
SELECT $1, w.endpoint_id, written.position, written.chain
  FROM written
  JOIN webhook_endpoints w
    ON w.platform_id = $1 AND w.status = 'enabled' AND (written.type = ANY (w.events) OR '*' = ANY (w.events))
 ORDER BY written.position, w.endpoint_id
"""


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    event_id: str
    type: str
    chain: str
    body: bytes


class EventsTable:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._pending: dict[str, list[NewEvent]] = defaultdict(list)

    def emit(self, platform_id: str, event: NewEvent) -> None:
        """Write ``event`` with this unit of work (at its end, before COMMIT)."""
        self._pending[platform_id].append(event)

    def emit_all(self, platform_id: str, events: Iterable[NewEvent]) -> None:
        self._pending[platform_id].extend(events)

    @property
    def pending(self) -> int:
        return sum(len(found) for found in self._pending.values())

    async def flush(self) -> int:
        """Write what was emitted (called by ``Database.transaction``); returns how many events."""
        written = 0
        for platform_id in sorted(self._pending):
            found = self._pending[platform_id]
            if not found:
                continue
            at = datetime.now(UTC)
            ids = [new_event_id() for _ in found]
            await self.conn.execute(
                _FLUSH,
                platform_id,
                ids,
                [e.type for e in found],
                [e.chain for e in found],
                [encode_event(i, platform_id, at, e) for i, e in zip(ids, found, strict=True)],
                at,
            )
            written += len(found)
        self._pending.clear()
        return written

    async def page(self, platform_id: str, *, after: int, limit: int, type_: str | None = None) -> list[StoredEvent]:
        """Events after position ``after``, oldest first (at most ``limit``)."""
        rows = await self.conn.fetch(
            """
            SELECT position, event_id, type, chain, body FROM events
             WHERE platform_id = $1 AND position > $2 AND ($3::text IS NULL OR type = $3)
             ORDER BY position LIMIT $4
            """,
            platform_id,
            after,
            type_,
            limit,
        )
        return [_event(r) for r in rows]

    async def get(self, platform_id: str, event_id: str) -> StoredEvent | None:
        row = await self.conn.fetchrow(
            "SELECT position, event_id, type, chain, body FROM events WHERE platform_id = $1 AND event_id = $2",
            platform_id,
            event_id,
        )
        return _event(row) if row is not None else None

    async def last_position(self, platform_id: str) -> int:
        found = await self.conn.fetchval("SELECT last_position FROM event_streams WHERE platform_id = $1", platform_id)
        return int(found or 0)


def _event(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        position=row["position"], event_id=row["event_id"], type=row["type"], chain=row["chain"], body=row["body"]
    )
