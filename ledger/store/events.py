"""The ``events`` table: the outbox every use case writes its events to, and the feed read from it.

Rules (the guarantee and why it holds: docs/events.md):
* ``emit`` only remembers the event; ``Database.transaction`` calls ``flush`` as the last
  statement of the unit of work, so the events commit or roll back with the change. The same
  statement fans each event out to the platform's enabled webhook endpoints. Writers share no
  lock: the event's ``seq`` is drawn by the insert.
* ``sequence`` gives committed events their feed positions, in ``seq`` order, with the platform's
  stream row locked: contiguous, assigned once, and always larger than every position assigned
  before. The feed runs it before it reads (``ledger.service.events.list_events``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
import msgspec

import ledger.store.values as values
from ledger.events import NewEvent, encode_event, new_event_id

_FLUSH = """
WITH written AS (
    INSERT INTO events (platform_id, event_id, type, chain, created_at, body)
    SELECT $1, e.event_id, e.type, e.chain, $6, e.body
      FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[]) WITH ORDINALITY AS e(event_id, type, chain, body, n)
     ORDER BY e.n
    RETURNING event_id, seq, type, chain
)
INSERT INTO webhook_deliveries (platform_id, endpoint_id, event_id, seq, chain)
SELECT $1, w.endpoint_id, written.event_id, written.seq, written.chain
  FROM written
  JOIN webhook_endpoints w
    ON w.platform_id = $1 AND w.status = 'enabled' AND (written.type = ANY (w.events) OR '*' = ANY (w.events))
 ORDER BY written.seq, w.endpoint_id
"""


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int | None  # None until sequenced
    seq: int
    event_id: str
    type: str
    chain: str
    body: bytes


class EventsTable:
    def __init__(self, conn: asyncpg.Connection, *, distributed: bool = False) -> None:
        self.conn = conn
        self.distributed = distributed  # a Citus cluster: many rows as a VALUES list (ledger/store/values.py)
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
            if self.distributed:
                await self._flush_on_citus(platform_id, found, ids, at)
                written += len(found)
                continue
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

    async def _flush_on_citus(self, platform_id: str, found: list[NewEvent], ids: list[str], at: datetime) -> None:
        """``_FLUSH`` as statements Citus routes to the platform's shard group (an ``INSERT … SELECT``
        from arrays or from a CTE would be copied in through a two-phase commit): the events as a
        VALUES list, the platform's enabled endpoints read, and their deliveries as a VALUES list,
        in the same order as on one server (``seq``, then endpoint)."""
        written = await values.insert_values(
            self.conn,
            "INSERT INTO events (platform_id, event_id, type, chain, created_at, body)",
            ("$1", "text", "text", "text", "$2", "bytea"),
            [
                (event_id, e.type, e.chain, encode_event(event_id, platform_id, at, e))
                for event_id, e in zip(ids, found, strict=True)
            ],
            shared=(platform_id, at),
            tail="RETURNING event_id, seq, type, chain",
        )
        endpoints = await self.conn.fetch(
            "SELECT endpoint_id, events FROM webhook_endpoints WHERE platform_id = $1 AND status = 'enabled'"
            " ORDER BY endpoint_id",
            platform_id,
        )
        deliveries = [
            (w["endpoint_id"], r["event_id"], r["seq"], r["chain"])
            for r in sorted(written, key=lambda r: r["seq"])
            for w in endpoints
            if r["type"] in w["events"] or "*" in w["events"]
        ]
        await values.insert_values(
            self.conn,
            "INSERT INTO webhook_deliveries (platform_id, endpoint_id, event_id, seq, chain)",
            ("$1", "text", "text", "bigint", "text"),
            deliveries,
            shared=(platform_id,),
        )

    async def sequence(self, platform_id: str, limit: int = 2000) -> int:
        """Give up to ``limit`` committed events without a position theirs, in ``seq`` order; returns
        how many. Run in a transaction of its own: the stream row stays locked until it commits."""
        base: int = await self.conn.fetchval(
            """
            INSERT INTO event_streams AS s (platform_id) VALUES ($1)
            ON CONFLICT (platform_id) DO UPDATE SET last_position = s.last_position
            RETURNING last_position
            """,
            platform_id,
        )
        # Statements of their own, so their snapshots are taken with the row locked: they see every
        # position an earlier run assigned, and the events committed until now.
        ids = [
            r["event_id"]
            for r in await self.conn.fetch(
                "SELECT event_id FROM events WHERE platform_id = $1 AND position IS NULL ORDER BY seq LIMIT $2",
                platform_id,
                limit,
            )
        ]
        if not ids:
            return 0
        # One table, looked up by its key (no join a planner could get wrong on a fresh table).
        await self.conn.execute(
            """
            UPDATE events SET position = $2 + array_position($3::text[], event_id)
             WHERE platform_id = $1 AND event_id = ANY ($3::text[])
            """,
            platform_id,
            base,
            ids,
        )
        numbered = len(ids)
        await self.conn.execute(
            "UPDATE event_streams SET last_position = $2 WHERE platform_id = $1", platform_id, base + numbered
        )
        return int(numbered)

    async def has_unsequenced(self, platform_id: str) -> bool:
        found: bool = await self.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM events WHERE platform_id = $1 AND position IS NULL)", platform_id
        )
        return found

    async def page(self, platform_id: str, *, after: int, limit: int, type_: str | None = None) -> list[StoredEvent]:
        """Sequenced events after position ``after``, oldest first (at most ``limit``)."""
        rows = await self.conn.fetch(
            """
            SELECT position, seq, event_id, type, chain, body FROM events
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
            "SELECT position, seq, event_id, type, chain, body FROM events WHERE platform_id = $1 AND event_id = $2",
            platform_id,
            event_id,
        )
        return _event(row) if row is not None else None

    async def last_position(self, platform_id: str) -> int:
        found = await self.conn.fetchval("SELECT last_position FROM event_streams WHERE platform_id = $1", platform_id)
        return int(found or 0)


def _event(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        position=row["position"],
        seq=row["seq"],
        event_id=row["event_id"],
        type=row["type"],
        chain=row["chain"],
        body=row["body"],
    )
