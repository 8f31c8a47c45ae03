"""The ``settlement_reports`` and ``settlement_lines`` tables (SQL only; rules live in ``ledger.settlement``).

A report row is written first with the summary ``{"state": "importing"}`` and gets its final
summary when every line is stored; a line row is written once, in the transaction that books it
(or records why not), so an import cut short resumes with the lines that have no row yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

import ledger.store.values as values
from ledger.settlement import ImportSummary, LineTally, SettlementLine, SettlementReport

_LINE_COLUMNS = (
    "line_no, invoice_number, gross, fee, net, settled_on, status, entry_id, detail, exception_kind, "
    "line_type, refund_id"
)


def _line(row: asyncpg.Record) -> SettlementLine:
    return SettlementLine(**{f: row[f] for f in SettlementLine.__struct_fields__})


class SettlementsTable:
    def __init__(self, conn: asyncpg.Connection, *, distributed: bool = False) -> None:
        self.conn = conn
        self.distributed = distributed  # a Citus cluster: many rows as a VALUES list (ledger/store/values.py)

    async def open_report(
        self,
        platform_id: str,
        *,
        report_id: str,
        content_hash: bytes,
        source_name: str,
        line_count: int,
        summary: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Record the report unless its content is known; return the summary stored for that content."""
        await self.conn.execute(
            """
            INSERT INTO settlement_reports (platform_id, report_id, source_name, content_hash, line_count, summary)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT DO NOTHING
            """,
            platform_id,
            report_id,
            source_name,
            content_hash,
            line_count,
            summary,
        )
        stored: dict[str, Any] = await self.conn.fetchval(
            "SELECT summary FROM settlement_reports WHERE platform_id = $1 AND content_hash = $2",
            platform_id,
            content_hash,
        )
        return stored

    async def lock_report(self, platform_id: str, report_id: str) -> None:
        """Serialise the transactions importing one report (so a resumed line is never done twice)."""
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"settlement:{platform_id}:{report_id}"
        )

    async def stored_line_numbers(self, platform_id: str, report_id: str, line_nos: Sequence[int]) -> set[int]:
        rows = await self.conn.fetch(
            """
            SELECT line_no FROM settlement_lines
             WHERE platform_id = $1 AND report_id = $2 AND line_no = ANY($3::int[])
            """,
            platform_id,
            report_id,
            list(line_nos),
        )
        return {r["line_no"] for r in rows}

    async def booked_lines(self, platform_id: str, invoices: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Where each invoice was booked: invoice -> (report id, line number)."""
        if not invoices:
            return {}
        rows = await self.conn.fetch(
            """
            SELECT invoice_number, report_id, line_no FROM settlement_lines
             WHERE platform_id = $1 AND status = 'booked' AND invoice_number = ANY($2::text[])
            """,
            platform_id,
            list(invoices),
        )
        return {r["invoice_number"]: (r["report_id"], r["line_no"]) for r in rows}

    async def add_lines(self, platform_id: str, report_id: str, lines: Sequence[SettlementLine]) -> None:
        if not lines:
            return
        if self.distributed:
            await values.insert_values(
                self.conn,
                f"INSERT INTO settlement_lines (platform_id, report_id, {_LINE_COLUMNS})",
                (
                    "$1",
                    "$2",
                    "int",
                    "text",
                    "bigint",
                    "bigint",
                    "bigint",
                    "date",
                    "text",
                    "bigint",
                    "text",
                    "text",
                    "text",
                    "text",
                ),
                [
                    (
                        line.line_no,
                        line.invoice_number,
                        line.gross,
                        line.fee,
                        line.net,
                        line.settled_on,
                        line.status,
                        line.entry_id,
                        line.detail,
                        line.exception_kind,
                        line.line_type,
                        line.refund_id,
                    )
                    for line in lines
                ],
                shared=(platform_id, report_id),
            )
            return
        await self.conn.execute(
            f"""
            INSERT INTO settlement_lines (platform_id, report_id, {_LINE_COLUMNS})
            SELECT $1, $2, * FROM unnest($3::int[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::date[],
                                         $9::text[], $10::bigint[], $11::text[], $12::text[], $13::text[], $14::text[])
            """,
            platform_id,
            report_id,
            [line.line_no for line in lines],
            [line.invoice_number for line in lines],
            [line.gross for line in lines],
            [line.fee for line in lines],
            [line.net for line in lines],
            [line.settled_on for line in lines],
            [line.status for line in lines],
            [line.entry_id for line in lines],
            [line.detail for line in lines],
            [line.exception_kind for line in lines],
            [line.line_type for line in lines],
            [line.refund_id for line in lines],
        )

    async def replace_line(self, platform_id: str, report_id: str, line: SettlementLine) -> None:
        """A re-evaluated line: booked now, or an exception for another reason."""
        await self.conn.execute(
            """
            UPDATE settlement_lines SET status = $4, entry_id = $5, detail = $6, exception_kind = $7, refund_id = $8
             WHERE platform_id = $1 AND report_id = $2 AND line_no = $3
            """,
            platform_id,
            report_id,
            line.line_no,
            line.status,
            line.entry_id,
            line.detail,
            line.exception_kind,
            line.refund_id,
        )

    async def reevaluable(self, platform_id: str, report_id: str) -> list[tuple[int, int, str]]:
        """The report's exception lines whose exception is still open: (line_no, exception_id, kind)."""
        rows = await self.conn.fetch(
            """
            SELECT l.line_no, e.exception_id, e.kind
              FROM settlement_lines l
              JOIN reconciliation_exceptions e
                ON e.platform_id = l.platform_id AND e.resolved_at IS NULL AND e.source = 'settlement_report'
               AND e.detail ->> 'report_id' = l.report_id AND (e.detail ->> 'line_no')::int = l.line_no
             WHERE l.platform_id = $1 AND l.report_id = $2 AND l.status = 'exception'
             ORDER BY l.line_no, e.exception_id
            """,
            platform_id,
            report_id,
        )
        return [(r["line_no"], r["exception_id"], r["kind"]) for r in rows]

    async def tally(self, platform_id: str, report_id: str) -> list[LineTally]:
        """The report's stored lines counted and totalled by status and exception kind."""
        rows = await self.conn.fetch(
            """
            SELECT status, exception_kind, line_type, count(*) AS lines,
                   coalesce(sum(gross), 0)::bigint AS gross, coalesce(sum(fee), 0)::bigint AS fee,
                   coalesce(sum(net), 0)::bigint AS net
              FROM settlement_lines WHERE platform_id = $1 AND report_id = $2
             GROUP BY status, exception_kind, line_type
             ORDER BY status, exception_kind, line_type
            """,
            platform_id,
            report_id,
        )
        return [LineTally(**{f: r[f] for f in LineTally.__struct_fields__}) for r in rows]

    async def store_summary(self, platform_id: str, report_id: str, summary: ImportSummary) -> None:
        await self.conn.execute(
            "UPDATE settlement_reports SET summary = $3 WHERE platform_id = $1 AND report_id = $2",
            platform_id,
            report_id,
            summary,
        )

    async def get(self, platform_id: str, report_id: str) -> SettlementReport | None:
        """The report with its lines in line order; None when the platform has no such report."""
        report = await self.conn.fetchrow(
            "SELECT report_id, source_name, line_count, summary, imported_at FROM settlement_reports "
            "WHERE platform_id = $1 AND report_id = $2",
            platform_id,
            report_id,
        )
        if report is None:
            return None
        lines = await self.conn.fetch(
            f"SELECT {_LINE_COLUMNS} FROM settlement_lines WHERE platform_id = $1 AND report_id = $2 ORDER BY line_no",
            platform_id,
            report_id,
        )
        return SettlementReport(
            report_id=report["report_id"],
            source_name=report["source_name"],
            line_count=report["line_count"],
            imported_at=report["imported_at"],
            summary=report["summary"],
            lines=tuple(_line(r) for r in lines),
        )
