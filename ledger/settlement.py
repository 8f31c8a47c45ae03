"""Settling orders from DOKU's report (pure): which line closes which order, and its entry.

Every line kind is booked (``ledger.settlement_report`` reads them; ``ledger.chart`` shows the
accounts):

    payment         Dr platform:bank net, Dr doku:fees_withheld fee, Cr doku:clearing; sellers'
                    shares move from pending to available (debt first)           settlement:<invoice>
    refund          DOKU deducts a gateway refund it paid: Dr doku:clearing, Cr platform:bank by
                    the deduction; the refund is cleared (it was the open item
                    "refund awaiting DOKU's deduction")                          deduction:<refund_id>
    chargeback      DOKU takes a payment back: the order is refunded by that amount under its
                    refund policy (a refund of mode "chargeback", the reversal from each party,
                    out through clearing) and the deduction is booked as for a refund line
    adjustment      Dr/Cr platform:bank against doku:suspense by the signed amount, and an
                    ``adjustment`` exception: the money is unexplained until an operator books it
                    where it belongs (resolving the exception)                   line:<report>:<no>
    fee_correction  Dr/Cr platform:bank against platform:commission: the allocation is frozen, so
                    the platform bears (or gains) any difference in DOKU's fee   line:<report>:<no>

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
refund is not netted on the payment line: it already credited ``doku:clearing``, which stays
short by the refund until DOKU deducts it, on a refund line of this or a later report
(``match_refund``, ``deduction_draft``). When DOKU gave its fee
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
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal

import msgspec

from ledger import bookings, chart
from ledger.calendar import SETTLEMENT_HOUR
from ledger.model import EntryDraft, Posted, PostResult
from ledger.orders import Order
from ledger.refunds import Refund
from ledger.settlement_report import INVALID_LINE, NET_MISMATCH, UNKNOWN_LINE_TYPE, Format, LineKind, ReportLine

SOURCE = "settlement_report"  # reconciliation_exceptions.source of every exception made here

# Exception kinds (stable codes, stored in settlement_lines.exception_kind and
# reconciliation_exceptions.kind). INVALID_LINE and NET_MISMATCH are found when a line is read.
DUPLICATE_LINE = "duplicate_line"  # invoice seen earlier in this report, or already settled
UNKNOWN_INVOICE = "unknown_invoice"
NOT_CAPTURED = "not_captured"
AMOUNT_MISMATCH = "amount_mismatch"  # gross != order amount
FEE_MISMATCH = "fee_mismatch"  # fee != the allocation's fee
POSTING_REJECTED = "posting_rejected"  # the ledger refused the entry (should not happen)
UNMATCHED_REFUND = "unmatched_refund"  # a refund line matches no gateway refund awaiting DOKU's deduction
REVERSAL_REJECTED = "reversal_rejected"  # a chargeback the order cannot take (more than is left, ...)
ADJUSTMENT = "adjustment"  # a booked adjustment: its money waits in doku:suspense for an operator
EXCEPTION_KINDS = (
    INVALID_LINE,
    NET_MISMATCH,
    DUPLICATE_LINE,
    UNKNOWN_INVOICE,
    NOT_CAPTURED,
    AMOUNT_MISMATCH,
    FEE_MISMATCH,
    POSTING_REJECTED,
    UNKNOWN_LINE_TYPE,
    UNMATCHED_REFUND,
    REVERSAL_REJECTED,
    ADJUSTMENT,
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
    """Invoice -> the number of the first payment line that names it (later ones are duplicates)."""
    first: dict[str, int] = {}
    for line in lines:
        if line.invoice_number is not None and line.kind == "payment":
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


def match_refund(
    line: ReportLine, order: Order | None, refunds: Sequence[Refund], claimed: Collection[str] = ()
) -> tuple[Refund | None, LineOutcome | None]:
    """The gateway refund a refund line deducts, or why there is none.

    With a reference (the refund's Request-Id, which is its id) the line names its refund;
    without one it takes the oldest succeeded gateway refund of the order for that amount that
    DOKU has not deducted yet (and that no earlier line of this report took: ``claimed``).
    """
    amount, fee = -(line.gross or 0), -(line.fee or 0)
    if order is None:
        return None, LineOutcome(kind=UNKNOWN_INVOICE, detail=f"no order {line.invoice_number!r}", actual=amount)
    if line.reference is not None:
        named = [r for r in refunds if line.reference in (r.refund_id, r.doku_request_id)]
        if not named:
            detail = f"order {order.invoice_number!r} has no refund {line.reference!r}"
            return None, LineOutcome(kind=UNMATCHED_REFUND, detail=detail, actual=amount)
        return _check_deductible(named[0], amount, fee, claimed)
    awaiting = [
        r
        for r in refunds
        if r.mode == "gateway" and r.status == "succeeded" and r.cleared_at is None and r.refund_id not in claimed
    ]
    same = [r for r in awaiting if r.amount == amount]
    if same:
        return _check_deductible(same[0], amount, fee, claimed)
    deducted = [r for r in refunds if r.mode == "gateway" and r.amount == amount and r.cleared_at is not None]
    if deducted:
        where = deducted[0].cleared_by or "an earlier report"
        detail = f"refund {deducted[0].refund_id!r} of {amount} was already deducted ({where})"
        return None, LineOutcome(kind=DUPLICATE_LINE, detail=detail, actual=amount)
    waiting = ", ".join(f"{r.refund_id} ({r.amount})" for r in awaiting) or "none"
    detail = f"no gateway refund of {amount} on {order.invoice_number!r} awaits DOKU's deduction (awaiting: {waiting})"
    return None, LineOutcome(kind=UNMATCHED_REFUND, detail=detail, actual=amount)


def _check_deductible(
    refund: Refund, amount: int, fee: int, claimed: Collection[str]
) -> tuple[Refund | None, LineOutcome | None]:
    if refund.mode != "gateway":
        detail = f"refund {refund.refund_id!r} was a {refund.mode} refund: DOKU had nothing to deduct"
        return None, LineOutcome(kind=UNMATCHED_REFUND, detail=detail, actual=amount)
    if refund.status != "succeeded":
        detail = f"refund {refund.refund_id!r} is {refund.status} in the books"
        return None, LineOutcome(kind=UNMATCHED_REFUND, detail=detail, actual=amount)
    if refund.cleared_at is not None or refund.refund_id in claimed:
        where = refund.cleared_by or "this report"
        detail = f"refund {refund.refund_id!r} was already deducted ({where})"
        return None, LineOutcome(kind=DUPLICATE_LINE, detail=detail, actual=amount)
    if refund.amount != amount:
        detail = f"the deduction's refund {amount} is not refund {refund.refund_id!r}'s {refund.amount}"
        return None, LineOutcome(kind=AMOUNT_MISMATCH, detail=detail, expected=refund.amount, actual=amount)
    returned = refund.reversal.fee if refund.reversal is not None else 0
    if fee != returned:
        detail = f"fee given back {fee} is not the {returned} DOKU gave back on refund {refund.refund_id!r}"
        return None, LineOutcome(kind=FEE_MISMATCH, detail=detail, expected=returned, actual=fee)
    return refund, None


def check_chargeback(line: ReportLine, order: Order | None) -> LineOutcome | None:
    """Whether a chargeback line can refund its order (the split engine has the last word)."""
    amount = -(line.gross or 0)
    if order is None:
        return LineOutcome(kind=UNKNOWN_INVOICE, detail=f"no order {line.invoice_number!r}", actual=amount)
    if order.status != "captured":
        return LineOutcome(kind=NOT_CAPTURED, detail=f"order {order.invoice_number!r} is {order.status}", actual=amount)
    left = order.amount - order.refund_reserved
    if amount > left:
        detail = f"a chargeback of {amount} exceeds the {left} left to refund on {order.invoice_number!r}"
        return LineOutcome(kind=REVERSAL_REJECTED, detail=detail, expected=left, actual=amount)
    return None


def chargeback_refund_id(report_id: str, line_no: int) -> str:
    """The id of the refund a chargeback line makes (deterministic, so a resumed import finds it)."""
    return f"cb-{report_id}-{line_no}"


def check_fee(reversal_fee: int, line: ReportLine) -> LineOutcome | None:
    """A chargeback's fee given back must be the part of DOKU's fee the reversal gives back."""
    fee = -(line.fee or 0)
    if fee == reversal_fee:
        return None
    detail = f"fee given back {fee} is not the {reversal_fee} the order's refund policy gives back"
    return LineOutcome(kind=FEE_MISMATCH, detail=detail, expected=reversal_fee, actual=fee)


def line_time(line: ReportLine) -> datetime | None:
    """When a line's money moved: DOKU's settlement hour on its settlement date."""
    return datetime.combine(line.settled_on, SETTLEMENT_HOUR) if line.settled_on else None


def deduction_draft(line: ReportLine, refund: Refund, report_id: str) -> EntryDraft:
    """DOKU deducted a refund from a settlement: clearing gets back what the bank did not receive."""
    return bookings.deduction_entry(
        refund.invoice_number,
        refund.refund_id,
        amount=-(line.net or 0),
        report_id=report_id,
        line_no=line.line_no,
        at=line_time(line),
    )


def adjustment_draft(line: ReportLine, report_id: str) -> EntryDraft:
    """An adjustment or a fee correction: the bank against doku:suspense or platform:commission."""
    assert line.net is not None
    return bookings.report_adjustment_entry(
        report_id,
        line.line_no,
        amount=line.net,
        against=chart.SUSPENSE if line.kind == "adjustment" else chart.COMMISSION,
        kind="settlement_adjustment" if line.kind == "adjustment" else "fee_correction",
        invoice_number=line.invoice_number,
        at=line_time(line),
    )


def adjustment_outcome(line: ReportLine) -> LineOutcome:
    """The exception a booked adjustment opens: its money waits in doku:suspense."""
    where = f" on {line.invoice_number!r}" if line.invoice_number else ""
    detail = f"DOKU {'added' if (line.net or 0) > 0 else 'deducted'} {abs(line.net or 0)}{where} ({line.type_label})"
    return LineOutcome(kind=ADJUSTMENT, detail=detail, actual=line.net)


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
    draft = bookings.settlement_entry(
        order.invoice_number,
        net=line.net,
        fee=line.fee - returned_fee,
        moves=moves,
        report_id=report_id,
        at=line_time(line),
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
    is the kind alone. ``line_type`` is the line's kind ("unknown" when the mapping did not know
    its type); ``refund_id`` the refund a refund or chargeback line deducted.
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
    line_type: LineKind = "payment"
    refund_id: str | None = None


def line_row(
    line: ReportLine, outcome: LineOutcome | None, entry_id: int | None, refund_id: str | None = None
) -> SettlementLine:
    """The row of one line: booked with its entry, or an exception with why."""
    return SettlementLine(
        line_no=line.line_no,
        invoice_number=line.invoice_number,
        gross=line.gross,
        fee=line.fee,
        net=line.net,
        settled_on=line.settled_on,
        status="exception" if outcome is not None else "booked",
        entry_id=None if outcome is not None else entry_id,
        detail=f"{outcome.kind}: {outcome.detail}" if outcome is not None else None,
        exception_kind=outcome.kind if outcome is not None else None,
        line_type=line.kind,
        refund_id=None if outcome is not None else refund_id,
    )


def line_rows(
    lines: Iterable[ReportLine], outcomes: Mapping[int, LineOutcome], entry_ids: Mapping[int, int]
) -> list[SettlementLine]:
    """The rows to store for a chunk's lines: each line has an outcome or an entry."""
    return [
        line_row(line, outcomes.get(line.line_no), entry_ids.get(line.line_no))
        for line in lines
        if line.line_no in entry_ids or line.line_no in outcomes
    ]


def exception_detail(report_id: str, line_no: int, outcome: LineOutcome) -> dict[str, Any]:
    """The ``reconciliation_exceptions.detail`` of a line's exception: where it is, and why."""
    return {"report_id": report_id, "line_no": line_no, "message": outcome.detail}


class LineTally(msgspec.Struct, frozen=True, kw_only=True):
    """The stored lines of a report with one status, exception kind and line type, counted and totalled."""

    status: LineStatus
    exception_kind: str | None
    lines: int
    gross: int
    fee: int
    net: int
    line_type: str = "payment"


class TypeSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The lines of one kind in a report: how many, how many booked, and the booked lines' net."""

    lines: int = 0
    booked: int = 0
    net: int = 0


class ImportSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What an import did. ``gross``, ``fee`` and ``net`` are the signed totals of the booked lines
    (a deduction is negative), so ``net`` is what the booked lines put in the bank.

    ``by_type`` counts the lines of each kind (``unknown`` for rows of a type the mapping does not
    know). A re-import of the same bytes returns the stored summary with ``already_imported``; it
    first re-evaluates the report's lines whose exceptions are still open (``reevaluated``), and
    books those whose problem was fixed meanwhile (``rebooked``).
    """

    report_id: str
    source_name: str
    format: Format
    lines: int  # every line read (booked + exceptions)
    skipped: int  # always 0: no line is ever skipped
    booked: int
    exceptions: dict[str, int]  # kind -> count
    gross: int
    fee: int
    net: int
    by_type: dict[str, TypeSummary] = {}
    already_imported: bool = False
    reevaluated: int = 0
    rebooked: int = 0

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
    by_type: dict[str, TypeSummary] = {}
    for t in sorted(rows, key=lambda t: t.line_type):
        was = by_type.get(t.line_type, TypeSummary())
        done = t.lines if t.status == "booked" else 0
        by_type[t.line_type] = TypeSummary(
            lines=was.lines + t.lines, booked=was.booked + done, net=was.net + (t.net if done else 0)
        )
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
        by_type=by_type,
    )


# The stored summary of a report whose import has not finished (new, or cut short).
IMPORTING: dict[str, Any] = {"state": "importing"}


def finished_summary(stored: Mapping[str, Any]) -> ImportSummary | None:
    """The summary of a report imported before (``already_imported``, nothing re-evaluated yet by
    this import); None while still importing."""
    if stored.get("state") == IMPORTING["state"]:
        return None
    found = msgspec.convert(stored, ImportSummary)
    return msgspec.structs.replace(found, already_imported=True, reevaluated=0, rebooked=0)


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
