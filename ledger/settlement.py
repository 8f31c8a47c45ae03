"""Importing DOKU's settlement report: each payment line closes one captured order.

Rules it enforces:
* Integers only. An amount is read from ``50000``, ``50,000`` or ``50000.00`` (a non-zero or
  three-digit fraction is refused: ``50.000`` is Indonesian for fifty thousand, so it is never
  read as fifty). JSON numbers are read without ever becoming floats.
* Bad data comes back as data (beancount style): a line that cannot be read, or that does not
  match its order, becomes a ``settlement_lines`` row with status ``exception`` and a
  ``reconciliation_exceptions`` row, and nothing is posted for it. Only a file that cannot be
  read at all (undecodable, a mapped column missing from the header) is ``SettlementReportInvalid``.
* A report is imported once: its SHA-256 is its identity. Importing the same bytes again changes
  nothing and returns the first summary with ``already_imported=True``; an import cut short
  resumes where it stopped.
* An order is settled once: a line for an order that is already settled is a ``duplicate_line``,
  and so is a second line for the same invoice within one report (the first one wins).

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

Lines are processed in chunks (``chunk_size`` lines, one transaction and one set-based
``LedgerStore.post`` each), so a 100 000-line file never holds one huge transaction.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

import asyncpg
import msgspec

from ledger import bookings, chart, errors
from ledger.journal import MAX_AMOUNT
from ledger.model import EntryDraft, Posted
from ledger.orders import Order, order_from_row
from ledger.store import LedgerStore

WIB = timezone(timedelta(hours=7), "WIB")  # DOKU's business time zone
SETTLEMENT_HOUR = time(12, 0, tzinfo=WIB)  # Jenius settles daily 12:00-14:00 WIB
SOURCE = "settlement_report"  # reconciliation_exceptions.source of every exception made here
CHUNK_SIZE = 500

Format = Literal["csv", "json"]

# Exception kinds (stable codes, stored in reconciliation_exceptions.kind).
INVALID_LINE = "invalid_line"  # the line cannot be read: missing invoice, bad amount or date
NET_MISMATCH = "net_mismatch"  # net != gross - fee on the line itself
DUPLICATE_LINE = "duplicate_line"  # invoice seen earlier in this report, or already settled
UNKNOWN_INVOICE = "unknown_invoice"
NOT_CAPTURED = "not_captured"
AMOUNT_MISMATCH = "amount_mismatch"  # gross != order amount
FEE_MISMATCH = "fee_mismatch"  # fee != the allocation's fee
POSTING_REJECTED = "posting_rejected"  # the ledger refused the entry (should not happen)
EXCEPTION_KINDS = (
    INVALID_LINE, NET_MISMATCH, DUPLICATE_LINE, UNKNOWN_INVOICE, NOT_CAPTURED, AMOUNT_MISMATCH,
    FEE_MISMATCH, POSTING_REJECTED,
)


# --- the mapping ------------------------------------------------------------------------------


class SettlementMapping(msgspec.Struct, frozen=True, kw_only=True):
    """Which report column holds each of our fields: the one place to change for DOKU's layout.

    Column names are matched ignoring case and surrounding spaces. ``settled_on`` may be None
    when the report has no date column. With ``type`` set, only rows whose type is one of
    ``payment_types`` are read; the others are counted as skipped. ``number_format`` "1.234,00"
    reads dots as thousands separators and a comma as the decimal mark. ``date_format`` is a
    ``strptime`` format; by default an ISO date (optionally followed by a time) is expected.
    """

    invoice_number: str
    gross: str
    fee: str
    net: str
    settled_on: str | None = None
    type: str | None = None
    payment_types: tuple[str, ...] = ("PAYMENT", "SUCCESS")
    number_format: Literal["1,234.00", "1.234,00"] = "1,234.00"
    date_format: str | None = None
    delimiter: str = ","

    def columns(self) -> dict[str, str]:
        """Our field -> its column, for every mapped column."""
        mapped = {
            "invoice_number": self.invoice_number,
            "gross": self.gross,
            "fee": self.fee,
            "net": self.net,
            "settled_on": self.settled_on,
            "type": self.type,
        }
        return {field: column for field, column in mapped.items() if column is not None}


# The DOKU sandbox's columns (jenius/sandbox_report.py). DOKU's real layout is unconfirmed.
DEFAULT_MAPPING = SettlementMapping(
    invoice_number="invoice_number",
    gross="gross_amount",
    fee="fee",
    net="net_amount",
    settled_on="settlement_date",
)

_MAPPING_FIELDS = frozenset(SettlementMapping.__struct_fields__)


def mapping_from_spec(
    spec: str | Mapping[str, Any] | None, base: SettlementMapping = DEFAULT_MAPPING
) -> SettlementMapping:
    """``base`` with some fields changed: ``"invoice_number=Invoice,gross=Amount"`` or a dict.

    ``payment_types`` may be given as ``|``-separated values; an empty value for
    ``settled_on`` or ``type`` means "no such column". Unknown fields are ``SettlementReportInvalid``.
    """
    if not spec:
        return base
    if isinstance(spec, str):
        pairs: dict[str, Any] = {}
        for part in spec.split(","):
            if not part.strip():
                continue
            field, sep, value = part.partition("=")
            if not sep:
                raise errors.SettlementReportInvalid(f"mapping part {part!r} is not field=column", field=part)
            pairs[field.strip()] = value.strip()
    else:
        pairs = dict(spec)
    if isinstance(pairs.get("payment_types"), str):
        pairs["payment_types"] = tuple(t for t in pairs["payment_types"].split("|") if t)
    unknown = sorted(set(pairs) - _MAPPING_FIELDS)
    if unknown:
        raise errors.SettlementReportInvalid(f"unknown mapping field(s) {unknown}", fields=unknown)
    for optional in ("settled_on", "type", "date_format"):
        if pairs.get(optional) == "":
            pairs[optional] = None
    try:
        return msgspec.convert({**msgspec.to_builtins(base), **pairs}, SettlementMapping)
    except msgspec.ValidationError as exc:
        raise errors.SettlementReportInvalid(f"invalid mapping: {exc}") from exc


# --- reading one report (pure) ----------------------------------------------------------------


class ReportLine(msgspec.Struct, frozen=True, kw_only=True):
    """One payment line as read. ``problem`` is set (an exception kind) when it cannot be used.

    ``line_no`` counts the report's data records from 1 (the header is not a record), skipped
    rows included, so it points at the same record in the file whatever the mapping.
    """

    line_no: int
    invoice_number: str | None
    gross: int | None
    fee: int | None
    net: int | None
    settled_on: date | None
    problem: str | None = None
    detail: str | None = None
    expected: int | None = None
    actual: int | None = None


class ParsedReport(msgspec.Struct, frozen=True, kw_only=True):
    format: Format
    lines: tuple[ReportLine, ...]  # payment lines only
    skipped: int  # rows whose type is not a payment type


_GROUPED = {"1,234.00": (",", "."), "1.234,00": (".", ",")}
_json_lines = msgspec.json.Decoder(list[dict[str, Any]], float_hook=Decimal)


def parse_amount(value: object, number_format: str = "1,234.00") -> int:
    """Whole rupiah from a report cell; ``ValueError`` when it is not exactly an integer.

    Accepts an int, an integral ``Decimal`` (a JSON number), or text: an optional sign, digits
    optionally grouped by three with the thousands separator, and an optional fraction of one or
    two zeros. Never goes through a float.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, int):
        amount = value
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise ValueError(f"{value} is not a whole number of rupiah")
        amount = int(value)
    elif isinstance(value, str):
        amount = _parse_amount_text(value.strip(), number_format)
    else:
        raise ValueError(f"{type(value).__name__} is not an amount")
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(f"{amount} is out of range")
    return amount


def _parse_amount_text(text: str, number_format: str) -> int:
    thousands, decimal_mark = _GROUPED[number_format]
    pattern = (
        r"([+-]?)(\d{1,3}(?:" + re.escape(thousands) + r"\d{3})+|\d+)"
        r"(?:" + re.escape(decimal_mark) + r"(\d{1,2}))?"
    )
    match = re.fullmatch(pattern, text)
    if match is None:
        raise ValueError(f"{text!r} is not an amount")
    sign, digits, fraction = match.groups()
    if fraction and int(fraction) != 0:
        raise ValueError(f"{text!r} has a fraction of a rupiah")
    amount = int(digits.replace(thousands, ""))
    return -amount if sign == "-" else amount


def parse_date(value: object, date_format: str | None = None) -> date | None:
    """The settlement date of a cell (None when blank); ``ValueError`` when unreadable."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} is not a date")
    text = value.strip()
    if not text:
        return None
    if date_format:
        return datetime.strptime(text, date_format).date()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return date.fromisoformat(text)
    if re.match(r"\d{4}-\d{2}-\d{2}[T ]", text):
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (moment.astimezone(WIB) if moment.tzinfo else moment).date()
    raise ValueError(f"{text!r} is not an ISO date")


def read_line(line_no: int, cells: Mapping[str, object], mapping: SettlementMapping) -> ReportLine:
    """One record (our field -> cell) as a ``ReportLine``, with every problem of the line listed."""
    problems: list[str] = []
    invoice = cells.get("invoice_number")
    invoice = invoice.strip() if isinstance(invoice, str) else None
    if not invoice:
        problems.append("invoice_number: missing")
        invoice = None
    amounts: dict[str, int | None] = {}
    for field in ("gross", "fee", "net"):
        raw = cells.get(field)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            problems.append(f"{field}: missing")
            amounts[field] = None
            continue
        try:
            amounts[field] = parse_amount(raw, mapping.number_format)
        except ValueError as exc:
            problems.append(f"{field}: {exc}")
            amounts[field] = None
    gross, fee, net = amounts["gross"], amounts["fee"], amounts["net"]
    if gross is not None and gross <= 0:
        problems.append(f"gross: {gross} is not positive")
    if fee is not None and fee < 0:
        problems.append(f"fee: {fee} is negative")
    try:
        settled_on = parse_date(cells.get("settled_on"), mapping.date_format)
    except ValueError as exc:
        problems.append(f"settled_on: {exc}")
        settled_on = None
    line = ReportLine(line_no=line_no, invoice_number=invoice, gross=gross, fee=fee, net=net, settled_on=settled_on)
    if problems:
        return msgspec.structs.replace(line, problem=INVALID_LINE, detail="; ".join(problems))
    assert gross is not None and fee is not None and net is not None
    if net != gross - fee:
        return msgspec.structs.replace(
            line, problem=NET_MISMATCH, detail=f"net {net} is not gross {gross} - fee {fee}",
            expected=gross - fee, actual=net,
        )
    return line


def detect_format(content: bytes) -> Format:
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return "json" if head in (b"[", b"{") else "csv"


def parse_report(
    content: bytes, mapping: SettlementMapping = DEFAULT_MAPPING, fmt: Format | None = None
) -> ParsedReport:
    """Every payment line of a report; ``SettlementReportInvalid`` only when the file is unreadable."""
    fmt = fmt or detect_format(content)
    if fmt == "csv":
        records = _csv_records(content, mapping)
    elif fmt == "json":
        records = _json_records(content, mapping)
    else:
        raise errors.SettlementReportInvalid(f"unknown format {fmt!r}", format=fmt)
    payment_types = {t.strip().casefold() for t in mapping.payment_types}
    lines: list[ReportLine] = []
    skipped = 0
    for line_no, cells in enumerate(records, start=1):
        if mapping.type is not None:
            kind = cells.get("type")
            if not isinstance(kind, str) or kind.strip().casefold() not in payment_types:
                skipped += 1
                continue
        lines.append(read_line(line_no, cells, mapping))
    return ParsedReport(format=fmt, lines=tuple(lines), skipped=skipped)


def _key(name: str) -> str:
    return name.strip().casefold()


def _csv_records(content: bytes, mapping: SettlementMapping) -> list[dict[str, object]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise errors.SettlementReportInvalid(f"the report is not UTF-8 text (byte {exc.start})") from exc
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=mapping.delimiter, strict=True))
    except csv.Error as exc:
        raise errors.SettlementReportInvalid(f"the report is not valid CSV: {exc}") from exc
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise errors.SettlementReportInvalid("the report is empty (no header row)")
    header = {_key(name): index for index, name in reversed(list(enumerate(rows[0])))}
    columns = mapping.columns()
    missing = sorted(column for column in columns.values() if _key(column) not in header)
    if missing:
        raise errors.SettlementReportInvalid(f"the report has no column(s) {missing}", missing=missing)
    where = {field: header[_key(column)] for field, column in columns.items()}
    return [{field: row[index] if index < len(row) else None for field, index in where.items()} for row in rows[1:]]


def _json_records(content: bytes, mapping: SettlementMapping) -> list[dict[str, object]]:
    try:
        objects = _json_lines.decode(content)
    except msgspec.DecodeError as exc:
        raise errors.SettlementReportInvalid(f"the report is not a JSON list of line objects: {exc}") from exc
    columns = mapping.columns()
    keyed = [{_key(k): v for k, v in obj.items()} for obj in objects]
    if keyed:
        seen = set().union(*keyed)
        missing = sorted(column for column in columns.values() if _key(column) not in seen)
        if missing:
            raise errors.SettlementReportInvalid(f"no line has the field(s) {missing}", missing=missing)
    records = []
    for obj in keyed:
        record: dict[str, object] = {}
        for field, column in columns.items():
            value = obj.get(_key(column))
            # A JSON invoice number may come as a number; a date only as a string.
            record[field] = str(value) if field == "invoice_number" and isinstance(value, int) else value
        records.append(record)
    return records


# --- matching lines to orders (pure) ----------------------------------------------------------


class LineOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """An exception for a line; ``None`` from ``check_line`` means the line can be booked."""

    kind: str
    detail: str
    expected: int | None = None
    actual: int | None = None


def check_readable(line: ReportLine, first_seen: Mapping[str, int]) -> LineOutcome | None:
    """The exception of a line that cannot be matched at all: unreadable, or a repeat in its report."""
    if line.problem is not None:
        return LineOutcome(kind=line.problem, detail=line.detail or line.problem, expected=line.expected,
                           actual=line.actual)
    first = first_seen.get(line.invoice_number or "", line.line_no)
    if first != line.line_no:
        return LineOutcome(kind=DUPLICATE_LINE, detail=f"invoice {line.invoice_number!r} is also on line {first}",
                           actual=line.gross)
    return None


def check_line(line: ReportLine, order: Order | None, *, booked_in: str | None = None) -> LineOutcome | None:
    """Whether a readable line settles ``order``; the first failed check is the exception."""
    if order is None:
        return LineOutcome(kind=UNKNOWN_INVOICE, detail=f"no order {line.invoice_number!r}", actual=line.gross)
    if order.settled_at is not None:
        where = f" by {booked_in}" if booked_in else ""
        return LineOutcome(kind=DUPLICATE_LINE, detail=f"order {order.invoice_number!r} was already settled{where}",
                           actual=line.gross)
    if order.status != "captured":
        return LineOutcome(kind=NOT_CAPTURED, detail=f"order {order.invoice_number!r} is {order.status}",
                           expected=order.amount, actual=line.gross)
    if line.gross != order.amount:
        return LineOutcome(kind=AMOUNT_MISMATCH, detail=f"gross {line.gross} is not the order amount {order.amount}",
                           expected=order.amount, actual=line.gross)
    if line.fee != order.allocation.fee:
        return LineOutcome(kind=FEE_MISMATCH, detail=f"fee {line.fee} is not the expected fee {order.allocation.fee}",
                           expected=order.allocation.fee, actual=line.fee)
    return None


def seller_releases(order: Order) -> dict[str, int]:
    """Each seller's share of the order still in pending: allocation net minus refunds so far.

    Refunds take from the order's pending share first, so what they took beyond it (a commission
    the platform kept, clawed back from the seller) came from elsewhere: never below zero.
    """
    reversed_ = order.reversed.sellers if order.reversed is not None else {}
    return {s.seller_id: max(0, s.net - reversed_.get(s.seller_id, 0)) for s in order.allocation.sellers}


def settlement_draft(
    line: ReportLine, order: Order, debts: dict[str, int], report_id: str
) -> EntryDraft:
    """The settlement entry of one line; repays from ``debts`` (updated in place) first."""
    moves: dict[str, tuple[int, int]] = {}
    for seller_id, amount in sorted(seller_releases(order).items()):
        if amount <= 0:
            continue
        to_debt, to_available = bookings.split_settlement_move(amount, debt=debts.get(seller_id, 0))
        debts[seller_id] = debts.get(seller_id, 0) - to_debt
        moves[seller_id] = (to_debt, to_available)
    returned_fee = order.reversed.fee if order.reversed is not None else 0
    assert line.net is not None and line.fee is not None
    at = datetime.combine(line.settled_on, SETTLEMENT_HOUR) if line.settled_on else None
    return bookings.settlement_entry(
        order.invoice_number, net=line.net, fee=line.fee - returned_fee, moves=moves, report_id=report_id, at=at
    )


# --- the import (imperative shell) ------------------------------------------------------------


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


_enc = msgspec.json.Encoder(order="sorted")
_IMPORTING = "importing"


def report_id_for(content: bytes) -> tuple[str, bytes]:
    digest = hashlib.sha256(content).digest()
    return f"sr-{digest.hex()[:24]}", digest


async def import_settlement_report(
    pool: asyncpg.Pool,
    store: LedgerStore,
    platform_id: str,
    *,
    source_name: str,
    content: bytes,
    mapping: SettlementMapping = DEFAULT_MAPPING,
    fmt: Format | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> ImportSummary:
    """Import one settlement report; see the module docstring for what each line does."""
    report = parse_report(content, mapping, fmt)
    report_id, digest = report_id_for(content)
    existing = await _open_report(pool, platform_id, report_id, digest, source_name, report)
    if existing is not None:
        return existing

    first_seen: dict[str, int] = {}
    for line in report.lines:
        if line.invoice_number is not None:
            first_seen.setdefault(line.invoice_number, line.line_no)
    total = len(report.lines)
    for start in range(0, total, max(chunk_size, 1)):
        chunk = report.lines[start : start + chunk_size]
        await store.run_in_transaction(
            lambda conn, chunk=chunk: _import_chunk(conn, store, platform_id, report_id, chunk, first_seen)
        )
        if progress is not None:
            progress(min(start + chunk_size, total), total)
    return await _finish_report(pool, platform_id, report_id, source_name, report)


async def _open_report(
    pool: asyncpg.Pool, platform_id: str, report_id: str, digest: bytes, source_name: str, report: ParsedReport
) -> ImportSummary | None:
    """Record the report (state "importing"); return the stored summary if it was imported before."""
    async with pool.acquire() as conn:
        await conn.execute(
            """
            INSERT INTO settlement_reports (platform_id, report_id, source_name, content_hash, line_count, summary)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb)
            ON CONFLICT DO NOTHING
            """,
            platform_id,
            report_id,
            source_name,
            digest,
            len(report.lines),
            _enc.encode({"state": _IMPORTING}).decode(),
        )
        stored = await conn.fetchval(
            "SELECT summary FROM settlement_reports WHERE platform_id = $1 AND content_hash = $2", platform_id, digest
        )
    summary = msgspec.json.decode(stored) if isinstance(stored, str) else dict(stored)
    if summary.get("state") == _IMPORTING:
        return None  # new, or an earlier import stopped part-way: (re)process the missing lines
    return msgspec.structs.replace(msgspec.convert(summary, ImportSummary), already_imported=True)


async def _import_chunk(
    conn: asyncpg.Connection,
    store: LedgerStore,
    platform_id: str,
    report_id: str,
    chunk: Sequence[ReportLine],
    first_seen: Mapping[str, int],
) -> None:
    # Serialises concurrent imports of the same report, so a resumed line is never done twice.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"settlement:{platform_id}:{report_id}")
    done = {
        r["line_no"]
        for r in await conn.fetch(
            """
            SELECT line_no FROM settlement_lines
             WHERE platform_id = $1 AND report_id = $2 AND line_no = ANY($3::int[])
            """,
            platform_id,
            report_id,
            [line.line_no for line in chunk],
        )
    }
    lines = [line for line in chunk if line.line_no not in done]
    if not lines:
        return

    outcomes: dict[int, LineOutcome] = {}
    readable: dict[int, tuple[str, ReportLine]] = {}  # line_no -> (invoice, line)
    for line in lines:
        outcome = check_readable(line, first_seen)
        if outcome is not None:
            outcomes[line.line_no] = outcome
        elif line.invoice_number is not None:
            readable[line.line_no] = (line.invoice_number, line)

    orders = await _lock_orders(conn, platform_id, sorted({invoice for invoice, _ in readable.values()}))
    booked_in = await _booked_reports(
        conn, platform_id, [o.invoice_number for o in orders.values() if o.settled_at is not None]
    )
    to_book: list[tuple[ReportLine, Order]] = []
    for invoice, line in readable.values():
        order = orders.get(invoice)
        outcome = check_line(line, order, booked_in=booked_in.get(invoice))
        if outcome is not None:
            outcomes[line.line_no] = outcome
        elif order is not None:
            to_book.append((line, order))

    entry_ids: dict[int, int] = {}
    if to_book:
        debts = await _lock_accounts(conn, platform_id, {s for _, o in to_book for s in seller_releases(o)})
        drafts = [settlement_draft(line, order, debts, report_id) for line, order in to_book]
        results = await store.post(platform_id, drafts, conn=conn)
        for (line, _), result in zip(to_book, results):
            if isinstance(result, Posted):
                entry_ids[line.line_no] = result.entry_id
            else:
                outcomes[line.line_no] = LineOutcome(kind=POSTING_REJECTED, detail=f"{result.code}: {result.detail}")
    await _record(conn, platform_id, report_id, lines, outcomes, entry_ids)


async def _lock_orders(conn: asyncpg.Connection, platform_id: str, invoices: list[str]) -> dict[str, Order]:
    rows = await conn.fetch(
        """
        SELECT * FROM orders WHERE platform_id = $1 AND invoice_number = ANY($2::text[])
         ORDER BY invoice_number FOR UPDATE
        """,
        platform_id,
        invoices,
    )
    return {r["invoice_number"]: order_from_row(r) for r in rows}


async def _booked_reports(conn: asyncpg.Connection, platform_id: str, invoices: list[str]) -> dict[str, str]:
    if not invoices:
        return {}
    rows = await conn.fetch(
        """
        SELECT invoice_number, report_id, line_no FROM settlement_lines
         WHERE platform_id = $1 AND status = 'booked' AND invoice_number = ANY($2::text[])
        """,
        platform_id,
        invoices,
    )
    return {r["invoice_number"]: f"report {r['report_id']} line {r['line_no']}" for r in rows}


async def _lock_accounts(conn: asyncpg.Connection, platform_id: str, sellers: set[str]) -> dict[str, int]:
    """Lock every account the chunk's entries touch (in account order); return sellers' debts."""
    codes = [chart.BANK, chart.FEES_WITHHELD, chart.CLEARING]
    for seller_id in sorted(sellers):
        codes += [chart.seller_pending(seller_id), chart.seller_available(seller_id), chart.seller_debt(seller_id)]
    rows = await conn.fetch(
        "SELECT code, balance FROM accounts WHERE platform_id = $1 AND code = ANY($2::text[]) "
        "ORDER BY account_id FOR UPDATE",
        platform_id,
        codes,
    )
    balance = {r["code"]: r["balance"] for r in rows}
    return {seller_id: balance.get(chart.seller_debt(seller_id), 0) for seller_id in sellers}


async def _record(
    conn: asyncpg.Connection,
    platform_id: str,
    report_id: str,
    lines: Sequence[ReportLine],
    outcomes: Mapping[int, LineOutcome],
    entry_ids: Mapping[int, int],
) -> None:
    """Write the chunk's settlement lines and exceptions, and mark the booked orders settled."""
    await conn.execute(
        """
        INSERT INTO settlement_lines (platform_id, report_id, line_no, invoice_number, gross, fee, net, settled_on,
                                      status, entry_id, detail)
        SELECT $1, $2, * FROM unnest($3::int[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::date[],
                                     $9::text[], $10::bigint[], $11::text[])
        """,
        platform_id,
        report_id,
        [line.line_no for line in lines],
        [line.invoice_number for line in lines],
        [line.gross for line in lines],
        [line.fee for line in lines],
        [line.net for line in lines],
        [line.settled_on for line in lines],
        ["exception" if line.line_no in outcomes else "booked" for line in lines],
        [entry_ids.get(line.line_no) for line in lines],
        [f"{o.kind}: {o.detail}" if (o := outcomes.get(line.line_no)) else None for line in lines],
    )
    failed = [line for line in lines if line.line_no in outcomes]
    if failed:
        await conn.execute(
            """
            INSERT INTO reconciliation_exceptions (platform_id, kind, source, invoice_number, expected, actual, detail)
            SELECT $1, kind, $2, invoice_number, expected, actual, detail::jsonb
              FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
                   AS s(kind, invoice_number, expected, actual, detail)
            """,
            platform_id,
            SOURCE,
            [outcomes[line.line_no].kind for line in failed],
            [line.invoice_number for line in failed],
            [outcomes[line.line_no].expected for line in failed],
            [outcomes[line.line_no].actual for line in failed],
            [
                _enc.encode(
                    {"report_id": report_id, "line_no": line.line_no, "message": outcomes[line.line_no].detail}
                ).decode()
                for line in failed
            ],
        )
    booked = [line for line in lines if line.line_no in entry_ids]
    if booked:
        await conn.execute(
            """
            UPDATE orders o SET settled_at = now(), settlement_entry_id = s.entry_id, updated_at = now()
              FROM unnest($2::text[], $3::bigint[]) AS s(invoice_number, entry_id)
             WHERE o.platform_id = $1 AND o.invoice_number = s.invoice_number
            """,
            platform_id,
            [line.invoice_number for line in booked],
            [entry_ids[line.line_no] for line in booked],
        )


async def _finish_report(
    pool: asyncpg.Pool, platform_id: str, report_id: str, source_name: str, report: ParsedReport
) -> ImportSummary:
    """Total the report's lines as stored (so a resumed import counts every line) and keep it."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT status, split_part(coalesce(detail, ''), ':', 1) AS kind, count(*) AS n,
                   coalesce(sum(gross), 0)::bigint AS gross, coalesce(sum(fee), 0)::bigint AS fee,
                   coalesce(sum(net), 0)::bigint AS net
              FROM settlement_lines WHERE platform_id = $1 AND report_id = $2
             GROUP BY 1, 2
            """,
            platform_id,
            report_id,
        )
        booked = [r for r in rows if r["status"] == "booked"]
        summary = ImportSummary(
            report_id=report_id,
            source_name=source_name,
            format=report.format,
            lines=sum(r["n"] for r in rows),
            skipped=report.skipped,
            booked=sum(r["n"] for r in booked),
            exceptions={r["kind"]: r["n"] for r in sorted(rows, key=lambda r: r["kind"]) if r["status"] == "exception"},
            gross=sum(r["gross"] for r in booked),
            fee=sum(r["fee"] for r in booked),
            net=sum(r["net"] for r in booked),
        )
        await conn.execute(
            "UPDATE settlement_reports SET summary = $3::jsonb WHERE platform_id = $1 AND report_id = $2",
            platform_id,
            report_id,
            _enc.encode(summary).decode(),
        )
    return summary
