"""The ``reconciliation_exceptions`` table: what could not be booked or did not agree, for an operator."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

import ledger.store.values as values


class ReconciliationException(msgspec.Struct, frozen=True, kw_only=True):
    exception_id: int
    kind: str
    source: str
    invoice_number: str | None
    expected: int | None
    actual: int | None
    detail: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None


class NewException(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    source: str
    invoice_number: str | None = None
    expected: int | None = None
    actual: int | None = None
    detail: dict[str, Any] = {}


def _exception(row: asyncpg.Record) -> ReconciliationException:
    return ReconciliationException(**{f: row[f] for f in ReconciliationException.__struct_fields__})


class ExceptionsTable:
    def __init__(self, conn: asyncpg.Connection, *, distributed: bool = False) -> None:
        self.conn = conn
        self.distributed = distributed  # a Citus cluster: many rows as a VALUES list (ledger/store/values.py)

    async def add(self, platform_id: str, found: Sequence[NewException]) -> list[ReconciliationException]:
        """Open exceptions (in the order given); returns them as stored. Use cases open them through
        ``ledger.service.events.open_exceptions``, which writes their events."""
        if not found:
            return []
        if self.distributed:
            rows = await values.insert_values(
                self.conn,
                "INSERT INTO reconciliation_exceptions (platform_id, kind, source, invoice_number, expected, actual,"
                " detail)",
                ("$1", "text", "text", "text", "bigint", "bigint", "jsonb"),
                [(e.kind, e.source, e.invoice_number, e.expected, e.actual, e.detail) for e in found],
                shared=(platform_id,),
                tail="RETURNING *",
            )
            return sorted((_exception(r) for r in rows), key=lambda e: e.exception_id)
        rows = await self.conn.fetch(
            """
            INSERT INTO reconciliation_exceptions (platform_id, kind, source, invoice_number, expected, actual, detail)
            SELECT $1, kind, source, invoice_number, expected, actual, detail
              FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::jsonb[])
                   WITH ORDINALITY AS s(kind, source, invoice_number, expected, actual, detail, n)
             ORDER BY n
            RETURNING *
            """,
            platform_id,
            [e.kind for e in found],
            [e.source for e in found],
            [e.invoice_number for e in found],
            [e.expected for e in found],
            [e.actual for e in found],
            [e.detail for e in found],
        )
        return sorted((_exception(r) for r in rows), key=lambda e: e.exception_id)

    async def page(
        self, platform_id: str, *, open_only: bool, limit: int, before: tuple[datetime, int] | None = None
    ) -> list[ReconciliationException]:
        rows = await self.conn.fetch(
            """
            SELECT * FROM reconciliation_exceptions
             WHERE platform_id = $1 AND (NOT $2 OR resolved_at IS NULL)
               AND ($4::timestamptz IS NULL OR (created_at, exception_id) < ($4, $5))
             ORDER BY created_at DESC, exception_id DESC LIMIT $3
            """,
            platform_id,
            open_only,
            limit,
            before[0] if before else None,
            before[1] if before else None,
        )
        return [_exception(r) for r in rows]

    async def get(
        self, platform_id: str, exception_id: int, *, for_update: bool = False
    ) -> ReconciliationException | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM reconciliation_exceptions WHERE platform_id = $1 AND exception_id = $2"
            + (" FOR UPDATE" if for_update else ""),
            platform_id,
            exception_id,
        )
        return _exception(row) if row is not None else None

    async def open_of(self, platform_id: str, invoice_number: str, kind: str) -> list[ReconciliationException]:
        """The order's open exceptions of one kind, oldest first."""
        rows = await self.conn.fetch(
            """
            SELECT * FROM reconciliation_exceptions
             WHERE platform_id = $1 AND invoice_number = $2 AND kind = $3 AND resolved_at IS NULL
             ORDER BY exception_id
            """,
            platform_id,
            invoice_number,
            kind,
        )
        return [_exception(r) for r in rows]

    async def add_evidence(self, platform_id: str, exception_ids: Sequence[int], key: str, evidence: Any) -> None:
        """Append ``evidence`` to the list ``detail[key]`` of each exception (a status check's answer)."""
        await self.conn.execute(
            """
            UPDATE reconciliation_exceptions
               SET detail = jsonb_set(detail, ARRAY[$3::text],
                                      coalesce(detail -> $3::text, '[]'::jsonb) || jsonb_build_array($4::jsonb))
             WHERE platform_id = $1 AND exception_id = ANY($2::bigint[])
            """,
            platform_id,
            list(exception_ids),
            key,
            evidence,
        )

    async def resolve(self, platform_id: str, exception_id: int, resolution: str) -> ReconciliationException | None:
        row = await self.conn.fetchrow(
            """
            UPDATE reconciliation_exceptions
               SET resolved_at = coalesce(resolved_at, (SELECT now())),
                   detail = detail || jsonb_build_object('resolution', $3::text)
             WHERE platform_id = $1 AND exception_id = $2
            RETURNING *
            """,
            platform_id,
            exception_id,
            resolution,
        )
        return _exception(row) if row is not None else None
