"""Reading DOKU's settlement report (pure): bytes and a column mapping in, payment lines out.

Rules it enforces:
* Integers only. An amount is read from ``50000``, ``50,000`` or ``50000.00`` (a non-zero or
  three-digit fraction is refused: ``50.000`` is Indonesian for fifty thousand, so it is never
  read as fifty). JSON numbers are read without ever becoming floats.
* Bad data comes back as data (beancount style): a line that cannot be read, or whose net is not
  gross minus fee, is still a ``ReportLine``, with its ``problem`` (an exception kind) and every
  reason listed in ``detail``. Only a file that cannot be read at all (undecodable, a mapped
  column missing from the header) is ``SettlementReportInvalid``.
* One place knows DOKU's layout: ``SettlementMapping`` (``DEFAULT_MAPPING`` is the sandbox's).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

from ledger import errors
from ledger.calendar import WIB
from ledger.journal import MAX_AMOUNT
from ledger.text import UNACCEPTABLE, is_clean_text

Format = Literal["csv", "json"]

# The exception kinds a line can have as read (the others are found by matching it to its order,
# ledger.settlement; all of them are ledger.settlement.EXCEPTION_KINDS).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)
INVALID_LINE = "invalid_line"  # the line cannot be read: missing invoice, bad amount or date
NET_MISMATCH = "net_mismatch"  # net != gross - fee on the line itself


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


# --- reading one report -----------------------------------------------------------------------


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
    try:
        if date_format:
            day = datetime.strptime(text, date_format).date()
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
        elif re.match(r"\d{4}-\d{2}-\d{2}[T ]", text):
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            day = (moment.astimezone(WIB) if moment.tzinfo else moment).date()
        else:
            raise ValueError(f"{text!r} is not an ISO date")
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+01:00 in WIB
        raise ValueError(f"{text!r} is out of range") from exc
    if not FIRST_DAY <= day <= LAST_DAY:  # beyond them the working-day arithmetic overflows
        raise ValueError(f"{text!r} is out of range")
    return day


def read_line(line_no: int, cells: Mapping[str, object], mapping: SettlementMapping) -> ReportLine:
    """One record (our field -> cell) as a ``ReportLine``, with every problem of the line listed."""
    problems: list[str] = []
    invoice = cells.get("invoice_number")
    invoice = invoice.strip() if isinstance(invoice, str) else None
    if invoice and not is_clean_text(invoice):
        problems.append("invoice_number: control characters")
        invoice = UNACCEPTABLE.sub("?", invoice)  # kept legible in the exception, never stored as sent
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
            line,
            problem=NET_MISMATCH,
            detail=f"net {net} is not gross {gross} - fee {fee}",
            expected=gross - fee,
            actual=net,
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
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
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
