"""Reading DOKU's settlement report (pure): bytes and a column mapping in, typed lines out.

Every row of a report is a line of one kind (``LINE_KINDS``), told by the mapping's ``type``
column and its ``*_types`` lists; nothing is ever skipped. What each kind means:

    payment         DOKU settles a captured payment: gross > 0, fee >= 0, net = gross - fee
    refund          DOKU deducts a gateway refund it paid the customer: the refund (gross), the
                    part of DOKU's fee it gives back on it (fee, usually 0), the deduction (net)
    chargeback      DOKU takes (part of) a payment back for a dispute: like a refund line
    adjustment      anything else DOKU adds (+) or deducts (-): the signed net (gross, fee optional)
    fee_correction  DOKU corrects its fee: the signed net (+ DOKU gives fee back, - it charges more)

Refund and chargeback rows may be written as deductions (negative) or as positive amounts: they
always deduct, and are stored signed as deductions (``gross`` and ``net`` < 0). A row whose type
the mapping does not know is an ``unknown_line_type`` line, an exception like any unreadable line.
A report without the type column at all is a report of payments only.

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
UNKNOWN_LINE_TYPE = "unknown_line_type"  # the row's type is not one the mapping knows (or is blank)

LineKind = Literal["payment", "refund", "chargeback", "adjustment", "fee_correction", "unknown"]
LINE_KINDS: tuple[str, ...] = ("payment", "refund", "chargeback", "adjustment", "fee_correction")
DEDUCTIONS = ("refund", "chargeback")  # kinds that always take money off a settlement
SIGNED = ("adjustment", "fee_correction")  # kinds whose signed net is the amount


# --- the mapping ------------------------------------------------------------------------------


class SettlementMapping(msgspec.Struct, frozen=True, kw_only=True):
    """Which report column holds each of our fields: the one place to change for DOKU's layout.

    Column names are matched ignoring case and surrounding spaces. ``settled_on`` may be None
    when the report has no date column. ``type`` is the column holding each row's type; its value
    (ignoring case and spaces) must be one of ``payment_types``, ``refund_types``,
    ``chargeback_types``, ``adjustment_types`` or ``fee_correction_types``, else the row is an
    ``unknown_line_type`` exception. ``type`` and ``reference`` are optional columns: a report
    without the type column is all payments; ``reference`` (the Request-Id of the payment or
    refund, which is the refund's id here) pins a refund row to its refund. ``number_format``
    "1.234,00" reads dots as thousands separators and a comma as the decimal mark.
    ``date_format`` is a ``strptime`` format; by default an ISO date (optionally followed by a
    time) is expected.
    """

    invoice_number: str
    gross: str
    fee: str
    net: str
    settled_on: str | None = None
    type: str | None = None
    reference: str | None = None
    payment_types: tuple[str, ...] = ("PAYMENT", "SUCCESS")
    refund_types: tuple[str, ...] = ("REFUND",)
    chargeback_types: tuple[str, ...] = ("CHARGEBACK",)
    adjustment_types: tuple[str, ...] = ("ADJUSTMENT",)
    fee_correction_types: tuple[str, ...] = ("FEE_CORRECTION",)
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
            "reference": self.reference,
        }
        return {field: column for field, column in mapped.items() if column is not None}

    def kind_of(self, label: object) -> LineKind:
        """The kind of a row from its type cell ("unknown" when the mapping does not know it)."""
        text = label.strip().casefold() if isinstance(label, str) else ""
        for kind, labels in (
            ("payment", self.payment_types),
            ("refund", self.refund_types),
            ("chargeback", self.chargeback_types),
            ("adjustment", self.adjustment_types),
            ("fee_correction", self.fee_correction_types),
        ):
            if text and text in {t.strip().casefold() for t in labels}:
                return kind  # type: ignore[return-value]
        return "unknown"


OPTIONAL_COLUMNS = frozenset({"type", "reference"})  # fields whose column a report may lack
TYPE_LISTS = ("payment_types", "refund_types", "chargeback_types", "adjustment_types", "fee_correction_types")


# The DOKU sandbox's columns (jenius/sandbox_report.py). DOKU's real layout is unconfirmed.
DEFAULT_MAPPING = SettlementMapping(
    invoice_number="invoice_number",
    gross="gross_amount",
    fee="fee",
    net="net_amount",
    settled_on="settlement_date",
    type="type",
    reference="request_id",
)

_MAPPING_FIELDS = frozenset(SettlementMapping.__struct_fields__)


def mapping_from_spec(
    spec: str | Mapping[str, Any] | None, base: SettlementMapping = DEFAULT_MAPPING
) -> SettlementMapping:
    """``base`` with some fields changed: ``"invoice_number=Invoice,gross=Amount"`` or a dict.

    The ``*_types`` lists may be given as ``|``-separated values; an empty value for
    ``settled_on``, ``type`` or ``reference`` means "no such column". Unknown fields are
    ``SettlementReportInvalid``.
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
    for types in TYPE_LISTS:
        if isinstance(pairs.get(types), str):
            pairs[types] = tuple(t for t in pairs[types].split("|") if t)
    unknown = sorted(set(pairs) - _MAPPING_FIELDS)
    if unknown:
        raise errors.SettlementReportInvalid(f"unknown mapping field(s) {unknown}", fields=unknown)
    for optional in ("settled_on", "type", "reference", "date_format"):
        if pairs.get(optional) == "":
            pairs[optional] = None
    try:
        return msgspec.convert({**msgspec.to_builtins(base), **pairs}, SettlementMapping)
    except msgspec.ValidationError as exc:
        raise errors.SettlementReportInvalid(f"invalid mapping: {exc}") from exc


# --- reading one report -----------------------------------------------------------------------


class ReportLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line as read. ``problem`` is set (an exception kind) when it cannot be used.

    ``line_no`` counts the report's data records from 1 (the header is not a record), so it points
    at the same record in the file whatever the mapping. Amounts are signed by their effect on
    the settlement (a deduction is negative) and always ``net == gross - fee`` on a usable line.
    """

    line_no: int
    invoice_number: str | None
    gross: int | None
    fee: int | None
    net: int | None
    settled_on: date | None
    kind: LineKind = "payment"
    type_label: str | None = None  # the row's type as written (None when the report has no type column)
    reference: str | None = None
    problem: str | None = None
    detail: str | None = None
    expected: int | None = None
    actual: int | None = None


class ParsedReport(msgspec.Struct, frozen=True, kw_only=True):
    format: Format
    lines: tuple[ReportLine, ...]  # every row of the report, in order
    skipped: int = 0  # always 0: no row is skipped (kept for readers of earlier summaries)


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


def read_line(
    line_no: int, cells: Mapping[str, object], mapping: SettlementMapping, kind: LineKind = "payment"
) -> ReportLine:
    """One record (our field -> cell) of one kind as a ``ReportLine``, with every problem listed."""
    problems: list[str] = []
    invoice = cells.get("invoice_number")
    invoice = invoice.strip() if isinstance(invoice, str) else None
    if invoice and not is_clean_text(invoice):
        problems.append("invoice_number: control characters")
        invoice = UNACCEPTABLE.sub("?", invoice)  # kept legible in the exception, never stored as sent
    if not invoice:
        if kind not in SIGNED:  # an adjustment or fee correction may concern no single order
            problems.append("invoice_number: missing")
        invoice = None
    reference = cells.get("reference")
    reference = reference.strip() or None if isinstance(reference, str) else None
    label = cells.get("type")
    amounts = _read_amounts(cells, mapping, kind, problems)
    try:
        settled_on = parse_date(cells.get("settled_on"), mapping.date_format)
    except ValueError as exc:
        problems.append(f"settled_on: {exc}")
        settled_on = None
    line = ReportLine(
        line_no=line_no,
        invoice_number=invoice,
        gross=amounts.get("gross"),
        fee=amounts.get("fee"),
        net=amounts.get("net"),
        settled_on=settled_on,
        kind=kind,
        type_label=label.strip() if isinstance(label, str) else None,
        reference=reference,
    )
    if kind == "unknown":
        known = ", ".join(t for types in TYPE_LISTS for t in getattr(mapping, types))
        return msgspec.structs.replace(
            line,
            problem=UNKNOWN_LINE_TYPE,
            detail=f"type {line.type_label or ''!r} is not one the mapping knows ({known})",
            actual=line.net,
        )
    if problems:
        return msgspec.structs.replace(line, problem=INVALID_LINE, detail="; ".join(problems))
    gross, fee, net = line.gross, line.fee, line.net
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


def _cell_amount(
    cells: Mapping[str, object], field: str, mapping: SettlementMapping, problems: list[str]
) -> int | None:
    """The amount in a cell; None when blank (``missing`` is the caller's to say) or unreadable (listed)."""
    raw = cells.get(field)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        return parse_amount(raw, mapping.number_format)
    except ValueError as exc:
        problems.append(f"{field}: {exc}")
        return None


def _read_amounts(
    cells: Mapping[str, object], mapping: SettlementMapping, kind: LineKind, problems: list[str]
) -> dict[str, int | None]:
    """Gross, fee and net of one line, signed by their effect on the settlement."""
    found = {field: _cell_amount(cells, field, mapping, problems) for field in ("gross", "fee", "net")}
    raw = {field: cells.get(field) for field in found}
    blank = {f for f, v in raw.items() if v is None or (isinstance(v, str) and not v.strip())}
    gross, fee, net = found["gross"], found["fee"], found["net"]
    if kind == "unknown":
        return found
    if kind == "payment":
        problems.extend(f"{field}: missing" for field in ("gross", "fee", "net") if field in blank)
        if gross is not None and gross <= 0:
            problems.append(f"gross: {gross} is not positive")
        if fee is not None and fee < 0:
            problems.append(f"fee: {fee} is negative")
        return found
    if kind in DEDUCTIONS:
        problems.extend(f"{field}: missing" for field in ("gross", "net") if field in blank)
        given = [v for v in (gross, fee, net) if v]
        if given and min(given) < 0 < max(given):
            problems.append("amounts: a deduction's amounts must all have one sign")
        if gross == 0:
            problems.append("gross: a deduction of 0")
        # Written as positive amounts or as deductions: stored as deductions.
        return {field: -abs(v) if v is not None else (0 if field == "fee" else None) for field, v in found.items()}
    # adjustment, fee_correction: the signed net is the amount
    if net is None:
        if "net" in blank:
            problems.append("net: missing")
        return found
    if net == 0:
        problems.append("net: an adjustment of 0")
    if kind == "fee_correction":
        # DOKU gives fee back (+) or charges more (-): the fee column sums to DOKU's fee.
        if gross not in (None, 0) or (fee is not None and fee != -net):
            problems.append("amounts: a fee correction has no gross and its fee is minus its net")
        return {"gross": 0, "fee": -net, "net": net}
    if gross is None and fee is None:
        return {"gross": net, "fee": 0, "net": net}
    return {"gross": gross if gross is not None else net + (fee or 0), "fee": fee or 0, "net": net}


def detect_format(content: bytes) -> Format:
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return "json" if head in (b"[", b"{") else "csv"


def parse_report(
    content: bytes, mapping: SettlementMapping = DEFAULT_MAPPING, fmt: Format | None = None
) -> ParsedReport:
    """Every line of a report; ``SettlementReportInvalid`` only when the file is unreadable."""
    fmt = fmt or detect_format(content)
    if fmt == "csv":
        records = _csv_records(content, mapping)
    elif fmt == "json":
        records = _json_records(content, mapping)
    else:
        raise errors.SettlementReportInvalid(f"unknown format {fmt!r}", format=fmt)
    typed = mapping.type is not None and any("type" in cells for cells in records)
    lines = [
        read_line(line_no, cells, mapping, mapping.kind_of(cells.get("type")) if typed else "payment")
        for line_no, cells in enumerate(records, start=1)
    ]
    return ParsedReport(format=fmt, lines=tuple(lines))


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
    missing = sorted(c for f, c in columns.items() if _key(c) not in header and f not in OPTIONAL_COLUMNS)
    if missing:
        raise errors.SettlementReportInvalid(f"the report has no column(s) {missing}", missing=missing)
    where = {field: header[_key(column)] for field, column in columns.items() if _key(column) in header}
    return [{field: row[index] if index < len(row) else None for field, index in where.items()} for row in rows[1:]]


def _json_records(content: bytes, mapping: SettlementMapping) -> list[dict[str, object]]:
    try:
        objects = _json_lines.decode(content)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise errors.SettlementReportInvalid(f"the report is not a JSON list of line objects: {exc}") from exc
    columns = mapping.columns()
    keyed = [{_key(k): v for k, v in obj.items()} for obj in objects]
    seen: set[str] = set().union(*keyed) if keyed else set()
    if keyed:
        missing = sorted(c for f, c in columns.items() if _key(c) not in seen and f not in OPTIONAL_COLUMNS)
        if missing:
            raise errors.SettlementReportInvalid(f"no line has the field(s) {missing}", missing=missing)
    records = []
    for obj in keyed:
        record: dict[str, object] = {}
        for field, column in columns.items():
            if _key(column) not in seen:
                continue  # an optional column no line has
            value = obj.get(_key(column))
            # A JSON invoice number or reference may come as a number; a date only as a string.
            textual = field in ("invoice_number", "reference", "type")
            record[field] = str(value) if textual and isinstance(value, int) else value
        records.append(record)
    return records
