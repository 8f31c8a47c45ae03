"""Importing DOKU's settlement report: each payment line closes one captured order.

Rules it keeps (what a line means and how it is booked: ``ledger.settlement``):
* Lines are processed in chunks (``chunk_size`` lines, one transaction and one set-based
  ``post`` each), so a 100 000-line file never holds one huge transaction.
* Resumable and imported once: the report's SHA-256 is its identity; a chunk skips the lines
  already stored, so an import cut short resumes where it stopped, and importing the same bytes
  again changes nothing and returns the first summary with ``already_imported=True``.
* Locks are taken in the order every writer takes them: the report (an advisory lock, which
  serialises concurrent imports of one report), the orders (``uow.orders.lock_many``, invoice
  order), then the balance rows (``uow.ledger.lock_balances``, account order).
* A line that is not booked is stored with its exception kind and becomes a reconciliation
  exception (``uow.exceptions.add``) in the same transaction; nothing is posted for it.
* ``on_finish(uow, summary)`` is awaited in the transaction that stores the final summary (or,
  for a report imported before, in the one that read it), so the caller can store its answer
  (an HTTP idempotency key) atomically with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from ledger import errors, settlement
from ledger import events as ev
from ledger.service.events import open_exceptions
from ledger.settlement import ImportSummary, LineOutcome, SettlementReport
from ledger.settlement_report import DEFAULT_MAPPING, Format, ParsedReport, ReportLine, SettlementMapping, parse_report
from ledger.store.database import Database, UnitOfWork
from ledger.store.exceptions import NewException

CHUNK_SIZE = 500

OnFinish = Callable[[UnitOfWork, ImportSummary], Awaitable[None]]


async def import_settlement_report(
    db: Database,
    platform_id: str,
    *,
    source_name: str,
    content: bytes,
    mapping: SettlementMapping = DEFAULT_MAPPING,
    fmt: Format | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
    on_finish: OnFinish | None = None,
) -> ImportSummary:
    """Import one settlement report; ``SettlementReportInvalid`` (nothing stored) when it is unreadable."""
    report = parse_report(content, mapping, fmt)
    report_id, digest = settlement.report_id_for(content)

    async def open_report(uow: UnitOfWork) -> ImportSummary | None:
        stored = await uow.settlements.open_report(
            platform_id,
            report_id=report_id,
            content_hash=digest,
            source_name=source_name,
            line_count=len(report.lines),
            summary=settlement.IMPORTING,
        )
        existing = settlement.finished_summary(stored)
        if existing is not None and on_finish is not None:
            await on_finish(uow, existing)
        return existing  # None: new, or an earlier import stopped part-way: (re)process the missing lines

    existing = await db.transaction(open_report)
    if existing is not None:
        return existing

    first_seen = settlement.first_lines(report.lines)
    total = len(report.lines)
    step = max(chunk_size, 1)
    for start in range(0, total, step):
        chunk = report.lines[start : start + step]

        async def import_chunk(uow: UnitOfWork, chunk: Sequence[ReportLine] = chunk) -> None:
            await _import_chunk(uow, platform_id, report_id, chunk, first_seen)

        await db.transaction(import_chunk)
        if progress is not None:
            progress(min(start + step, total), total)
    return await db.transaction(lambda uow: _finish(uow, platform_id, report_id, source_name, report, on_finish))


async def _import_chunk(
    uow: UnitOfWork, platform_id: str, report_id: str, chunk: Sequence[ReportLine], first_seen: Mapping[str, int]
) -> None:
    await uow.settlements.lock_report(platform_id, report_id)
    done = await uow.settlements.stored_line_numbers(platform_id, report_id, [line.line_no for line in chunk])
    lines = [line for line in chunk if line.line_no not in done]
    if not lines:
        return

    outcomes, readable = settlement.triage(lines, first_seen)
    orders = await uow.orders.lock_many(platform_id, [line.invoice_number or "" for line in readable])
    booked_in = await uow.settlements.booked_lines(
        platform_id, sorted(o.invoice_number for o in orders.values() if o.settled_at is not None)
    )
    mismatched, to_book = settlement.match_orders(readable, orders, booked_in)
    outcomes |= mismatched

    entry_ids: dict[int, int] = {}
    if to_book:
        booked_orders = [order for _, order in to_book]
        balances = await uow.ledger.lock_balances(platform_id, settlement.accounts_to_lock(booked_orders))
        debts = settlement.seller_debts(balances, booked_orders)
        results = await uow.ledger.post(platform_id, settlement.settlement_drafts(to_book, debts, report_id))
        entry_ids, rejected = settlement.posting_outcomes(to_book, results)
        outcomes |= rejected

    await uow.settlements.add_lines(platform_id, report_id, settlement.line_rows(lines, outcomes, entry_ids))
    await open_exceptions(uow, platform_id, _exceptions(report_id, lines, outcomes))
    booked = [line for line in lines if line.line_no in entry_ids]
    if booked:
        await uow.orders.mark_settled(
            platform_id, [line.invoice_number or "" for line in booked], [entry_ids[line.line_no] for line in booked]
        )


def _exceptions(report_id: str, lines: Sequence[ReportLine], outcomes: Mapping[int, LineOutcome]) -> list[NewException]:
    """One reconciliation exception per line not booked, in line order."""
    return [
        NewException(
            kind=outcome.kind,
            source=settlement.SOURCE,
            invoice_number=line.invoice_number,
            expected=outcome.expected,
            actual=outcome.actual,
            detail=settlement.exception_detail(report_id, line.line_no, outcome),
        )
        for line in lines
        if (outcome := outcomes.get(line.line_no)) is not None
    ]


async def _finish(
    uow: UnitOfWork,
    platform_id: str,
    report_id: str,
    source_name: str,
    report: ParsedReport,
    on_finish: OnFinish | None,
) -> ImportSummary:
    """Total the report's lines as stored (so a resumed import counts every line) and keep it."""
    tallies = await uow.settlements.tally(platform_id, report_id)
    summary = settlement.summarize(report_id, source_name, report.format, report.skipped, tallies)
    await uow.settlements.store_summary(platform_id, report_id, summary)
    uow.events.emit(platform_id, ev.settlement_event(summary))
    if on_finish is not None:
        await on_finish(uow, summary)
    return summary


async def get_report(db: Database, platform_id: str, report_id: str) -> SettlementReport:
    """An imported report with its lines; ``SettlementReportNotFound`` when the platform has none by that id."""

    async def read(uow: UnitOfWork) -> SettlementReport:
        found = await uow.settlements.get(platform_id, report_id)
        if found is None:
            raise errors.SettlementReportNotFound(f"no settlement report {report_id!r}", report_id=report_id)
        return found

    return await db.transaction(read, isolation="repeatable_read", readonly=True)
