"""Importing DOKU's settlement report: every line is booked, or becomes an exception.

Rules it keeps (what each line kind means and how it is booked: ``ledger.settlement``):
* Payment lines (and lines that cannot be read) are processed in chunks (``chunk_size`` lines, one
  transaction and one set-based ``post`` each), so a 100 000-line file never holds one huge
  transaction. The other kinds (refund deductions, chargebacks, adjustments, fee corrections) are
  rare; each is booked in a transaction of its own after the payments, so a chargeback sees the
  settlement of its order in the same report.
* Resumable and imported once: the report's SHA-256 is its identity; a transaction skips the lines
  already stored, so an import cut short resumes where it stopped.
* Importing the same bytes again books nothing twice: it re-evaluates the report's lines whose
  exceptions are still open (the order was captured meanwhile, the refund succeeded, ...), books
  those that now can be, resolves their exceptions, and returns the stored summary with
  ``already_imported=True``.
* Locks are taken in the order every writer takes them: the report (an advisory lock, which
  serialises concurrent imports of one report), the orders (``uow.orders.lock_many``, invoice
  order), then the balance rows (``uow.ledger.lock_balances``, account order).
* A line that is not booked is stored with its exception kind and becomes a reconciliation
  exception (``open_exceptions``, with its event) in the same transaction; nothing is posted for
  it. A booked adjustment opens an ``adjustment`` exception too: its money waits in
  ``doku:suspense``. An exception a re-import resolves gets its ``exception_resolved`` event.
* ``on_finish(uow, summary)`` is awaited in the transaction that stores the final summary (or,
  for a report imported before, in the one that read it), so the caller can store its answer
  (an HTTP idempotency key) atomically with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

import msgspec

from ledger import chart, errors, settlement, split
from ledger import events as ev
from ledger.model import EntryDraft, Posted
from ledger.service.events import exception_resolved, open_exceptions
from ledger.service.refunds import RefundDraft, complete_refund, reserve_refund
from ledger.settlement import ImportSummary, LineOutcome, SettlementReport
from ledger.settlement_report import DEFAULT_MAPPING, Format, ParsedReport, ReportLine, SettlementMapping, parse_report
from ledger.store.database import Database, UnitOfWork
from ledger.store.exceptions import NewException

CHUNK_SIZE = 500
# Lines of the other kinds a group commit carries: each posts in statements of its own, and the
# ledger's per-transaction worklist (migration 0010) grows with every statement, so a transaction of
# many small postings costs more per posting than a few of them (measured: bench_reconciliation).
GROUP_SIZE = 40

OnFinish = Callable[[UnitOfWork, ImportSummary], Awaitable[None]]

# What becomes of one line: its exception (None when booked), the entry that booked it, the
# refund it deducted, and an exception a booked line opens (an adjustment).
Evaluated = tuple[LineOutcome | None, int | None, str | None, LineOutcome | None]


def _in_chunks(line: ReportLine) -> bool:
    """Payment lines and unreadable lines go in chunks; the other kinds are booked one by one."""
    return line.kind == "payment" or line.problem is not None


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

    async def open_report(uow: UnitOfWork) -> tuple[ImportSummary | None, list[tuple[int, int, str]]]:
        stored = await uow.settlements.open_report(
            platform_id,
            report_id=report_id,
            content_hash=digest,
            source_name=source_name,
            line_count=len(report.lines),
            summary=settlement.IMPORTING,
        )
        existing = settlement.finished_summary(stored)
        if existing is None:
            return None, []  # new, or an earlier import stopped part-way: (re)process the missing lines
        targets = await uow.settlements.reevaluable(platform_id, report_id)
        if not targets and on_finish is not None:
            await on_finish(uow, existing)
        return existing, targets

    existing, targets = await db.transaction(open_report)
    first_seen = settlement.first_lines(report.lines)
    if existing is not None:
        if not targets:
            return existing
        return await _reevaluate(db, platform_id, report_id, report, existing, targets, first_seen, on_finish)

    total = len(report.lines)
    chunked = [line for line in report.lines if _in_chunks(line)]
    step = max(chunk_size, 1)
    done = 0
    for start in range(0, len(chunked), step):
        chunk = chunked[start : start + step]

        async def import_chunk(uow: UnitOfWork, chunk: Sequence[ReportLine] = chunk) -> None:
            await _import_chunk(uow, platform_id, report_id, chunk, first_seen)

        await db.transaction(import_chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    # The other kinds touch the hot accounts line by line: group-committed, each line in its own
    # savepoint of one transaction a chunk (an error is raised after its neighbours committed; a
    # re-import resumes at the lines not stored).
    others = [line for line in report.lines if not _in_chunks(line)]
    for start in range(0, len(others), min(step, GROUP_SIZE)):
        group = others[start : start + min(step, GROUP_SIZE)]
        outcomes = await db.group([_one_line(platform_id, report_id, line) for line in group])
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        done += len(group)
        if progress is not None:
            progress(done, total)
    return await db.transaction(lambda uow: _finish(uow, platform_id, report_id, source_name, report, on_finish))


# --- payment lines, set-based ------------------------------------------------------------------


async def _import_chunk(
    uow: UnitOfWork, platform_id: str, report_id: str, chunk: Sequence[ReportLine], first_seen: Mapping[str, int]
) -> None:
    await uow.settlements.lock_report(platform_id, report_id)
    done = await uow.settlements.stored_line_numbers(platform_id, report_id, [line.line_no for line in chunk])
    lines = [line for line in chunk if line.line_no not in done]
    if not lines:
        return
    outcomes, entry_ids = await _book_payments(uow, platform_id, report_id, lines, first_seen)
    await uow.settlements.add_lines(platform_id, report_id, settlement.line_rows(lines, outcomes, entry_ids))
    await open_exceptions(uow, platform_id, _exceptions(report_id, lines, outcomes))


async def _book_payments(
    uow: UnitOfWork, platform_id: str, report_id: str, lines: Sequence[ReportLine], first_seen: Mapping[str, int]
) -> tuple[dict[int, LineOutcome], dict[int, int]]:
    """Match payment lines to their orders and book those that settle one: exceptions and entry ids by line."""
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
    booked = [line for line in lines if line.line_no in entry_ids]
    if booked:
        await uow.orders.mark_settled(
            platform_id, [line.invoice_number or "" for line in booked], [entry_ids[line.line_no] for line in booked]
        )
    return outcomes, entry_ids


# --- the other kinds, one line a transaction ---------------------------------------------------


def _one_line(platform_id: str, report_id: str, line: ReportLine) -> Callable[[UnitOfWork], Awaitable[None]]:
    async def work(uow: UnitOfWork) -> None:
        await _import_one(uow, platform_id, report_id, line)

    return work


async def _import_one(uow: UnitOfWork, platform_id: str, report_id: str, line: ReportLine) -> None:
    await uow.settlements.lock_report(platform_id, report_id)
    if await uow.settlements.stored_line_numbers(platform_id, report_id, [line.line_no]):
        return
    outcome, entry_id, refund_id, opened = await _book_other(uow, platform_id, report_id, line)
    await uow.settlements.add_lines(platform_id, report_id, [settlement.line_row(line, outcome, entry_id, refund_id)])
    raised = outcome or opened
    if raised is not None:
        await open_exceptions(uow, platform_id, [_exception(report_id, line, raised)])


async def _book_other(uow: UnitOfWork, platform_id: str, report_id: str, line: ReportLine) -> Evaluated:
    match line.kind:
        case "refund":
            return await _book_deduction(uow, platform_id, report_id, line)
        case "chargeback":
            return await _book_chargeback(uow, platform_id, report_id, line)
        case "fee_correction" if line.invoice_number is not None:
            orders = await uow.orders.lock_many(platform_id, [line.invoice_number])
            if line.invoice_number not in orders:
                found = LineOutcome(kind=settlement.UNKNOWN_INVOICE, detail=f"no order {line.invoice_number!r}")
                return found, None, None, None
    against = chart.SUSPENSE if line.kind == "adjustment" else chart.COMMISSION
    await uow.ledger.lock_balances(platform_id, [chart.BANK, against])
    outcome, entry_id = await _post(uow, platform_id, settlement.adjustment_draft(line, report_id))
    opened = settlement.adjustment_outcome(line) if line.kind == "adjustment" and outcome is None else None
    return outcome, entry_id, None, opened


async def _book_deduction(uow: UnitOfWork, platform_id: str, report_id: str, line: ReportLine) -> Evaluated:
    invoice = line.invoice_number or ""
    orders = await uow.orders.lock_many(platform_id, [invoice])
    refunds = (await uow.refunds.of_orders(platform_id, [invoice])).get(invoice, [])
    refund, outcome = settlement.match_refund(line, orders.get(invoice), refunds)
    if refund is None:
        return outcome, None, None, None
    await uow.ledger.lock_balances(platform_id, [chart.CLEARING, chart.BANK])
    outcome, entry_id = await _post(uow, platform_id, settlement.deduction_draft(line, refund, report_id))
    if outcome is None and entry_id is not None:
        await uow.refunds.clear(
            platform_id, refund.refund_id, entry_id=entry_id, cleared_by=f"report {report_id} line {line.line_no}"
        )
    return outcome, entry_id, refund.refund_id, None


async def _book_chargeback(uow: UnitOfWork, platform_id: str, report_id: str, line: ReportLine) -> Evaluated:
    """DOKU took the payment back: refund the order by that amount (mode "chargeback"), then book the
    deduction, in this transaction."""
    invoice = line.invoice_number or ""
    orders = await uow.orders.lock_many(platform_id, [invoice])
    order = orders.get(invoice)
    outcome = settlement.check_chargeback(line, order)
    if outcome is not None or order is None:
        return outcome, None, None, None
    amount = -(line.gross or 0)
    try:
        reversal = split.reverse(order.allocation, order.reversed, amount, order.policy.refund)
    except errors.LedgerError as exc:
        return LineOutcome(kind=settlement.REVERSAL_REJECTED, detail=str(exc), actual=amount), None, None, None
    outcome = settlement.check_fee(reversal.fee, line)
    if outcome is not None:
        return outcome, None, None, None
    refund_id = settlement.chargeback_refund_id(report_id, line.line_no)
    draft = RefundDraft(amount=amount, reason=f"chargeback: report {report_id} line {line.line_no}", mode="chargeback")
    await reserve_refund(uow, platform_id, refund_id, invoice, draft)
    refund = await complete_refund(uow, platform_id, refund_id)
    outcome, entry_id = await _post(uow, platform_id, settlement.deduction_draft(line, refund, report_id))
    if outcome is not None or entry_id is None:
        raise errors.InvalidEntry([("posting_rejected", outcome.detail if outcome else "no entry")])
    await uow.refunds.clear(
        platform_id, refund_id, entry_id=entry_id, cleared_by=f"report {report_id} line {line.line_no}"
    )
    return None, entry_id, refund_id, None


async def _post(uow: UnitOfWork, platform_id: str, draft: EntryDraft) -> tuple[LineOutcome | None, int | None]:
    (result,) = await uow.ledger.post(platform_id, [draft])
    if isinstance(result, Posted):
        return None, result.entry_id
    return LineOutcome(kind=settlement.POSTING_REJECTED, detail=f"{result.code}: {result.detail}"), None


# --- re-importing a report ---------------------------------------------------------------------


async def _reevaluate(
    db: Database,
    platform_id: str,
    report_id: str,
    report: ParsedReport,
    existing: ImportSummary,
    targets: Sequence[tuple[int, int, str]],
    first_seen: Mapping[str, int],
    on_finish: OnFinish | None,
) -> ImportSummary:
    """Look again at the lines whose exceptions are open: book those whose problem was fixed."""
    by_no = {line.line_no: line for line in report.lines}
    rebooked = 0
    for line_no, exception_id, _kind in targets:
        line = by_no.get(line_no)
        if line is None or line.problem is not None:
            continue  # the same bytes read the same: an unreadable line stays as it is

        async def again(uow: UnitOfWork, line: ReportLine = line, exception_id: int = exception_id) -> bool:
            return await _reevaluate_line(uow, platform_id, report_id, line, exception_id, first_seen)

        rebooked += await db.transaction(again)

    async def finish(uow: UnitOfWork) -> ImportSummary:
        tallies = await uow.settlements.tally(platform_id, report_id)
        summary = settlement.summarize(report_id, existing.source_name, report.format, report.skipped, tallies)
        summary = msgspec.structs.replace(summary, reevaluated=len(targets), rebooked=rebooked)
        await uow.settlements.store_summary(platform_id, report_id, summary)
        answer = msgspec.structs.replace(summary, already_imported=True)
        if on_finish is not None:
            await on_finish(uow, answer)
        return answer

    return await db.transaction(finish)


async def _reevaluate_line(
    uow: UnitOfWork,
    platform_id: str,
    report_id: str,
    line: ReportLine,
    exception_id: int,
    first_seen: Mapping[str, int],
) -> bool:
    """One line again: booked now (its exception resolved), or its exception brought up to date."""
    await uow.settlements.lock_report(platform_id, report_id)
    found = await uow.exceptions.get(platform_id, exception_id, for_update=True)
    if found is None or found.resolved_at is not None:
        return False  # another import (or an operator) got there first
    entry_id: int | None
    if _in_chunks(line):
        outcomes, entry_ids = await _book_payments(uow, platform_id, report_id, [line], first_seen)
        outcome, entry_id, refund_id, opened = outcomes.get(line.line_no), entry_ids.get(line.line_no), None, None
    else:
        outcome, entry_id, refund_id, opened = await _book_other(uow, platform_id, report_id, line)
    if outcome is not None and outcome.kind == found.kind:
        return False  # the same problem: the exception stays as it is
    await uow.settlements.replace_line(platform_id, report_id, settlement.line_row(line, outcome, entry_id, refund_id))
    why = "booked when the report was imported again" if outcome is None else f"now {outcome.kind}"
    resolved = await uow.exceptions.resolve(platform_id, exception_id, f"re-evaluated on re-import: {why}")
    if resolved is not None:
        exception_resolved(uow, platform_id, resolved)
    raised = outcome or opened
    if raised is not None:
        await open_exceptions(uow, platform_id, [_exception(report_id, line, raised)])
    return outcome is None


# --- shared ------------------------------------------------------------------------------------


def _exception(report_id: str, line: ReportLine, outcome: LineOutcome) -> NewException:
    return NewException(
        kind=outcome.kind,
        source=settlement.SOURCE,
        invoice_number=line.invoice_number,
        expected=outcome.expected,
        actual=outcome.actual,
        detail=settlement.exception_detail(report_id, line.line_no, outcome),
    )


def _exceptions(report_id: str, lines: Sequence[ReportLine], outcomes: Mapping[int, LineOutcome]) -> list[NewException]:
    """One reconciliation exception per line not booked, in line order."""
    return [
        _exception(report_id, line, outcome) for line in lines if (outcome := outcomes.get(line.line_no)) is not None
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
