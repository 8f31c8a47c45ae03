"""Settling orders from DOKU's report (pure): which line closes which order, and its entry.

Rules it enforces:
* Bad data comes back as data (beancount style): a line that cannot be read, or that does not
  match its order, gets a ``LineOutcome`` (an exception kind and why); it is kept as a
  ``settlement_lines`` row with status ``exception`` and a ``reconciliation_exceptions`` row, and
  nothing is posted for it.
* A report is identified by its SHA-256 (``report_id_for``), so the same bytes are imported once.
* An order is settled once: a line for an order that is already settled is a ``duplicate_line``,
  and so is a second line for the same invoice within one report (the first one wins).
* Nothing here changes its arguments: ``settlement_draft`` returns the debts left to repay.

What one line means. DOKU's line is the payment line: ``gross`` is the order amount, ``fee``
DOKU's fee on it (the allocation's fee), ``net = gross - fee`` what reaches the bank. A gateway
refund made before settlement is not netted here: it already credited ``doku:clearing``, which
stays negative by the refund until DOKU deducts it from a later settlement. When DOKU gave its fee
back on a refund (``Reversal.fee``), that part was already taken off ``doku:fees_withheld``, so
settlement releases only the fee still withheld and leaves the returned part in clearing as
money DOKU owes back.

Booking (see ``ledger.chart``): Dr ``platform:bank`` net, Dr ``doku:fees_withheld``, Cr
``doku:clearing``; each seller's share still in pending (allocation net minus what refunds took
back) moves out of pending, repaying the seller's debt first and the rest to available.

Reading the report is ``ledger.settlement_report``; the import itself (chunks, locks, storage) is
``ledger.service.settlement``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal

import msgspec

from ledger import bookings, chart
from ledger.calendar import SETTLEMENT_HOUR
from ledger.model import EntryDraft, Posted, PostResult
from ledger.orders import Order
from ledger.settlement_report import INVALID_LINE, NET_MISMATCH, Format, ReportLine

SOURCE = "settlement_report"  # reconciliation_exceptions.source of every exception made here

# Exception kinds (stable codes, stored in settlement_lines.exception_kind and
# reconciliation_exceptions.kind). INVALID_LINE and NET_MISMATCH are found when a line is read.
DUPLICATE_LINE = "duplicate_line"  # invoice seen earlier in this report, or already settled
UNKNOWN_INVOICE = "unknown_invoice"
NOT_CAPTURED = "not_captured"
AMOUNT_MISMATCH = "amount_mismatch"  # gross != order amount
FEE_MISMATCH = "fee_mismatch"  # fee != the allocation's fee
POSTING_REJECTED = "posting_rejected"  # the ledger refused the entry (should not happen)
EXCEPTION_KINDS = (
    INVALID_LINE,
    NET_MISMATCH,
    DUPLICATE_LINE,
    UNKNOWN_INVOICE,
    NOT_CAPTURED,
    AMOUNT_MISMATCH,
    FEE_MISMATCH,
    POSTING_REJECTED,
)

LineStatus = Literal["booked", "exception"]


# --- matching lines to orders -----------------------------------------------------------------


class LineOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """An exception for a line; ``None`` from ``check_line`` means the line can be booked."""

    kind: str
    detail: str
    expected: int | None = None
    actual: int | None = None


def first_lines(lines: Iterable[ReportLine]) -> dict[str, int]:
    """Invoice -> the number of the first line that names it (later ones are duplicates)."""
    first: dict[str, int] = {}
    for line in lines:
        if line.invoice_number is not None:
            first.setdefault(line.invoice_number, line.line_no)
    return first


def check_readable(line: ReportLine, first_seen: Mapping[str, int]) -> LineOutcome | None:
    """The exception of a line that cannot be matched at all: unreadable, or a repeat in its report."""
    if line.problem is not None:
        return LineOutcome(
            kind=line.problem, detail=line.detail or line.problem, expected=line.expected, actual=line.actual
        )
    first = first_seen.get(line.invoice_number or "", line.line_no)
    if first != line.line_no:
        return LineOutcome(
            kind=DUPLICATE_LINE, detail=f"invoice {line.invoice_number!r} is also on line {first}", actual=line.gross
        )
    return None


def check_line(line: ReportLine, order: Order | None, *, booked_in: str | None = None) -> LineOutcome | None:
    """Whether a readable line settles ``order``; the first failed check is the exception."""
    if order is None:
        return LineOutcome(kind=UNKNOWN_INVOICE, detail=f"no order {line.invoice_number!r}", actual=line.gross)
    if order.settled_at is not None:
        where = f" by {booked_in}" if booked_in else ""
        return LineOutcome(
            kind=DUPLICATE_LINE, detail=f"order {order.invoice_number!r} was already settled{where}", actual=line.gross
        )
    if order.status != "captured":
        return LineOutcome(
            kind=NOT_CAPTURED,
            detail=f"order {order.invoice_number!r} is {order.status}",
            expected=order.amount,
            actual=line.gross,
        )
    if line.gross != order.amount:
        return LineOutcome(
            kind=AMOUNT_MISMATCH,
            detail=f"gross {line.gross} is not the order amount {order.amount}",
            expected=order.amount,
            actual=line.gross,
        )
    if line.fee != order.allocation.fee:
        return LineOutcome(
            kind=FEE_MISMATCH,
            detail=f"fee {line.fee} is not the expected fee {order.allocation.fee}",
            expected=order.allocation.fee,
            actual=line.fee,
        )
    return None


def triage(
    lines: Iterable[ReportLine], first_seen: Mapping[str, int]
) -> tuple[dict[int, LineOutcome], list[ReportLine]]:
    """Split lines into exceptions found without any order (by line number) and lines to match."""
    outcomes: dict[int, LineOutcome] = {}
    readable: list[ReportLine] = []
    for line in lines:
        outcome = check_readable(line, first_seen)
        if outcome is not None:
            outcomes[line.line_no] = outcome
        elif line.invoice_number is not None:
            readable.append(line)
    return outcomes, readable


def match_orders(
    readable: Iterable[ReportLine],
    orders: Mapping[str, Order],
    booked_in: Mapping[str, tuple[str, int]],
) -> tuple[dict[int, LineOutcome], list[tuple[ReportLine, Order]]]:
    """Check each readable line against its order: exceptions by line number, and what to book.

    ``booked_in`` says where an already settled order was booked: invoice -> (report id, line).
    """
    outcomes: dict[int, LineOutcome] = {}
    to_book: list[tuple[ReportLine, Order]] = []
    for line in readable:
        invoice = line.invoice_number or ""
        order = orders.get(invoice)
        where = booked_in.get(invoice)
        outcome = check_line(line, order, booked_in=f"report {where[0]} line {where[1]}" if where else None)
        if outcome is not None:
            outcomes[line.line_no] = outcome
        elif order is not None:
            to_book.append((line, order))
    return outcomes, to_book


# --- the settlement entries -------------------------------------------------------------------


def seller_releases(order: Order) -> dict[str, int]:
    """Each seller's share of the order still in pending: allocation net minus refunds so far.

    Refunds take from the order's pending share first, so what they took beyond it (a commission
    the platform kept, clawed back from the seller) came from elsewhere: never below zero.
    """
    reversed_ = order.reversed.sellers if order.reversed is not None else {}
    return {s.seller_id: max(0, s.net - reversed_.get(s.seller_id, 0)) for s in order.allocation.sellers}


def accounts_to_lock(orders: Iterable[Order]) -> list[str]:
    """Every account the settlement entries of ``orders`` touch, to lock before reading debts."""
    codes = [chart.BANK, chart.FEES_WITHHELD, chart.CLEARING]
    for seller_id in sorted({s for order in orders for s in seller_releases(order)}):
        codes += [chart.seller_pending(seller_id), chart.seller_available(seller_id), chart.seller_debt(seller_id)]
    return codes


def seller_debts(balances: Mapping[str, int], orders: Iterable[Order]) -> dict[str, int]:
    """Each seller's debt (from locked balances by code) for the sellers of ``orders``."""
    sellers = {s for order in orders for s in seller_releases(order)}
    return {seller_id: balances.get(chart.seller_debt(seller_id), 0) for seller_id in sorted(sellers)}


def settlement_draft(
    line: ReportLine, order: Order, debts: Mapping[str, int], report_id: str
) -> tuple[EntryDraft, dict[str, int]]:
    """The settlement entry of one line, repaying ``debts`` first; and the debts still owed after it."""
    left = dict(debts)
    moves: dict[str, tuple[int, int]] = {}
    for seller_id, amount in sorted(seller_releases(order).items()):
        if amount <= 0:
            continue
        to_debt, to_available = bookings.split_settlement_move(amount, debt=left.get(seller_id, 0))
        left[seller_id] = left.get(seller_id, 0) - to_debt
        moves[seller_id] = (to_debt, to_available)
    returned_fee = order.reversed.fee if order.reversed is not None else 0
    assert line.net is not None and line.fee is not None
    at = datetime.combine(line.settled_on, SETTLEMENT_HOUR) if line.settled_on else None
    draft = bookings.settlement_entry(
        order.invoice_number, net=line.net, fee=line.fee - returned_fee, moves=moves, report_id=report_id, at=at
    )
    return draft, left


def settlement_drafts(
    to_book: Sequence[tuple[ReportLine, Order]], debts: Mapping[str, int], report_id: str
) -> list[EntryDraft]:
    """The entries of a chunk in order; each one repays what the ones before it left of the debts."""
    drafts: list[EntryDraft] = []
    for line, order in to_book:
        draft, debts = settlement_draft(line, order, debts, report_id)
        drafts.append(draft)
    return drafts


def posting_outcomes(
    to_book: Sequence[tuple[ReportLine, Order]], results: Sequence[PostResult]
) -> tuple[dict[int, int], dict[int, LineOutcome]]:
    """What the ledger made of each entry: entry ids of booked lines, exceptions of refused ones."""
    entry_ids: dict[int, int] = {}
    outcomes: dict[int, LineOutcome] = {}
    for (line, _), result in zip(to_book, results, strict=True):
        if isinstance(result, Posted):
            entry_ids[line.line_no] = result.entry_id
        else:
            outcomes[line.line_no] = LineOutcome(kind=POSTING_REJECTED, detail=f"{result.code}: {result.detail}")
    return entry_ids, outcomes


# --- what is stored ---------------------------------------------------------------------------


class SettlementLine(msgspec.Struct, frozen=True, kw_only=True):
    """One ``settlement_lines`` row: a line as read, and whether it was booked or why not.

    ``detail`` is ``"<kind>: <why>"`` for an exception (None when booked); ``exception_kind``
    is the kind alone.
    """

    line_no: int
    invoice_number: str | None
    gross: int | None
    fee: int | None
    net: int | None
    settled_on: date | None
    status: LineStatus
    entry_id: int | None
    detail: str | None
    exception_kind: str | None


def line_rows(
    lines: Iterable[ReportLine], outcomes: Mapping[int, LineOutcome], entry_ids: Mapping[int, int]
) -> list[SettlementLine]:
    """The rows to store for a chunk's lines: each line has an outcome or an entry."""
    rows = []
    for line in lines:
        outcome = outcomes.get(line.line_no)
        rows.append(
            SettlementLine(
                line_no=line.line_no,
                invoice_number=line.invoice_number,
                gross=line.gross,
                fee=line.fee,
                net=line.net,
                settled_on=line.settled_on,
                status="exception" if outcome is not None else "booked",
                entry_id=None if outcome is not None else entry_ids[line.line_no],
                detail=f"{outcome.kind}: {outcome.detail}" if outcome is not None else None,
                exception_kind=outcome.kind if outcome is not None else None,
            )
        )
    return rows


def exception_detail(report_id: str, line_no: int, outcome: LineOutcome) -> dict[str, Any]:
    """The ``reconciliation_exceptions.detail`` of a line's exception: where it is, and why."""
    return {"report_id": report_id, "line_no": line_no, "message": outcome.detail}


class LineTally(msgspec.Struct, frozen=True, kw_only=True):
    """The stored lines of a report with one status and exception kind, counted and totalled."""

    status: LineStatus
    exception_kind: str | None
    lines: int
    gross: int
    fee: int
    net: int


class ImportSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What an import did. ``gross``, ``fee`` and ``net`` are totals of the booked lines."""

    report_id: str
    source_name: str
    format: Format
    lines: int  # payment lines read (booked + exceptions)
    skipped: int  # rows that are not payment lines
    booked: int
    exceptions: dict[str, int]  # kind -> count
    gross: int
    fee: int
    net: int
    already_imported: bool = False

    @property
    def exception_count(self) -> int:
        return sum(self.exceptions.values())


def summarize(
    report_id: str, source_name: str, fmt: Format, skipped: int, tallies: Iterable[LineTally]
) -> ImportSummary:
    """The summary of a report from its stored lines (so a resumed import counts every line)."""
    rows = list(tallies)
    booked = [t for t in rows if t.status == "booked"]
    exceptions: dict[str, int] = {}
    for t in sorted((t for t in rows if t.status == "exception"), key=lambda t: t.exception_kind or ""):
        kind = t.exception_kind or ""
        exceptions[kind] = exceptions.get(kind, 0) + t.lines
    return ImportSummary(
        report_id=report_id,
        source_name=source_name,
        format=fmt,
        lines=sum(t.lines for t in rows),
        skipped=skipped,
        booked=sum(t.lines for t in booked),
        exceptions=exceptions,
        gross=sum(t.gross for t in booked),
        fee=sum(t.fee for t in booked),
        net=sum(t.net for t in booked),
    )


# The stored summary of a report whose import has not finished (new, or cut short).
IMPORTING: dict[str, Any] = {"state": "importing"}


def finished_summary(stored: Mapping[str, Any]) -> ImportSummary | None:
    """The summary of a report imported before (``already_imported``); None while still importing."""
    if stored.get("state") == IMPORTING["state"]:
        return None
    return msgspec.structs.replace(msgspec.convert(stored, ImportSummary), already_imported=True)


def report_id_for(content: bytes) -> tuple[str, bytes]:
    """A report's id and content hash: the same bytes are the same report."""
    digest = hashlib.sha256(content).digest()
    return f"sr-{digest.hex()[:24]}", digest


class SettlementReport(msgspec.Struct, frozen=True, kw_only=True):
    """An imported report with its lines. ``summary`` is an ``ImportSummary`` once the import
    finished, ``{"state": "importing"}`` before."""

    report_id: str
    source_name: str
    line_count: int
    imported_at: datetime
    summary: dict[str, Any]
    lines: tuple[SettlementLine, ...]
