"""Reading settlement reports (pure): integer amounts in every spelling, any column layout through
the mapping, and bad lines coming back as data instead of exceptions."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import errors
from ledger.journal import MAX_AMOUNT
from ledger.settlement_report import (
    DEFAULT_MAPPING,
    INVALID_LINE,
    NET_MISMATCH,
    UNKNOWN_LINE_TYPE,
    SettlementMapping,
    detect_format,
    mapping_from_spec,
    parse_amount,
    parse_report,
)

amounts = st.integers(min_value=0, max_value=MAX_AMOUNT)


def spellings(n: int) -> list[str]:
    return [str(n), f"{n:,}", f"{n}.00", f"{n:,}.0", f" {n} ", f"+{n}"]


@given(amounts)
def test_every_spelling_of_an_amount_reads_back_as_the_same_int(n):
    for text in spellings(n):
        value = parse_amount(text)
        assert type(value) is int and value == n
    assert parse_amount(f"-{n:,}") == -n


@given(amounts)
def test_indonesian_grouping_reads_back_with_its_number_format(n):
    text = f"{n:,}".replace(",", ".") + ",00"
    assert parse_amount(text, "1.234,00") == n


@given(amounts, st.integers(min_value=1, max_value=99))
def test_a_fraction_of_a_rupiah_is_refused(n, cents):
    with pytest.raises(ValueError):
        parse_amount(f"{n}.{cents:02d}")
    with pytest.raises(ValueError):
        parse_amount(Decimal(f"{n}.{cents:02d}"))


@pytest.mark.parametrize("text", ["50.000", "1.000.000", "5,00,000", "50 000", "1e3", "", "Rp50000", "--5", "0x10"])
def test_ambiguous_or_malformed_amounts_are_refused(text):
    with pytest.raises(ValueError):
        parse_amount(text)


@pytest.mark.parametrize("value", [True, 50000.0, None, MAX_AMOUNT + 1])
def test_floats_booleans_and_out_of_range_values_are_not_amounts(value):
    with pytest.raises(ValueError):
        parse_amount(value)


def test_json_numbers_never_become_floats():
    content = (
        b'[{"invoice_number": 7, "gross_amount": 50000.0, "fee": 5e2, "net_amount": "49,500",'
        b' "settlement_date": "2024-05-03"}]'
    )
    (line,) = parse_report(content, DEFAULT_MAPPING).lines
    assert (line.invoice_number, line.gross, line.fee, line.net, line.problem) == ("7", 50_000, 500, 49_500, None)
    assert all(type(v) is int for v in (line.gross, line.fee, line.net))


columns = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_ ", min_size=1, max_size=12).map(str.strip).filter(bool)


@st.composite
def layouts(draw):
    names = draw(st.lists(columns, min_size=7, max_size=7, unique_by=str.casefold))
    ours, extras = names[:5], names[5:]
    order = draw(st.permutations(ours + extras))
    return SettlementMapping(invoice_number=ours[0], gross=ours[1], fee=ours[2], net=ours[3], settled_on=ours[4]), order


lines = st.lists(
    st.tuples(
        st.text(alphabet="ABC-0123456789", min_size=1, max_size=20),
        st.integers(min_value=1, max_value=10**12),
        st.integers(min_value=0, max_value=10**6),
        st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
    ),
    max_size=20,
)


def render(mapping: SettlementMapping, order: list[str], rows: list[dict[str, object]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=order, restval="x")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


@given(layouts(), lines)
def test_any_column_layout_reads_the_same_lines_through_its_mapping(layout, data):
    mapping, order = layout
    rows = [
        {
            mapping.invoice_number: inv,
            mapping.gross: f"{g:,}",
            mapping.fee: f,
            mapping.net: g - f,
            mapping.settled_on: d.isoformat(),
        }
        for inv, g, f, d in data
    ]
    report = parse_report(render(mapping, order, rows), mapping)
    got = [
        (line.line_no, line.invoice_number, line.gross, line.fee, line.net, line.settled_on, line.problem)
        for line in report.lines
    ]
    assert got == [(i, inv, g, f, g - f, d, None) for i, (inv, g, f, d) in enumerate(data, start=1)]


@given(lines.filter(bool), st.data())
def test_a_corrupted_cell_makes_that_line_an_exception_and_leaves_the_others_alone(data, draw):
    m = DEFAULT_MAPPING
    rows = [
        {m.invoice_number: inv, m.gross: g, m.fee: f, m.net: g - f, m.settled_on: d.isoformat()}
        for inv, g, f, d in data
    ]
    bad = draw.draw(st.sets(st.integers(min_value=0, max_value=len(rows) - 1)))
    corruptions = {
        m.invoice_number: [""],
        m.settled_on: ["12.5", "abc", "2024-13-45"],
        **{field: ["", "12.5", "abc", "1,2,3", "2024-13-45"] for field in (m.gross, m.fee, m.net)},
    }
    for index in bad:
        field = draw.draw(st.sampled_from(sorted(corruptions)))
        rows[index][field] = draw.draw(st.sampled_from(corruptions[field]))
    # The optional type and reference columns left out: a report of payments only.
    report = parse_report(render(m, [m.invoice_number, m.gross, m.fee, m.net, m.settled_on], rows), m)
    assert len(report.lines) == len(rows)
    for index, line in enumerate(report.lines):
        if index in bad:
            assert line.problem == INVALID_LINE and line.detail
        else:
            assert line.problem is None


def test_net_that_is_not_gross_minus_fee_is_a_net_mismatch():
    content = b"invoice_number,gross_amount,fee,net_amount,settlement_date\nINV-1,10000,100,9800,2024-05-03\n"
    (line,) = parse_report(content).lines
    assert (line.problem, line.expected, line.actual) == (NET_MISMATCH, 9_900, 9_800)


def test_every_problem_of_a_line_is_listed_at_once():
    content = b"invoice_number,gross_amount,fee,net_amount,settlement_date\n,1.5,-1,,someday\n"
    (line,) = parse_report(content).lines
    assert line.problem == INVALID_LINE
    assert [part.split(":")[0] for part in line.detail.split("; ")] == [
        "invoice_number",
        "gross",
        "net",
        "fee",
        "settled_on",
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n\n",
        b"invoice_number,gross_amount,fee,settlement_date\nINV-1,1,0,2024-05-03\n",
        b'[{"invoice_number": "INV-1", "gross_amount": 1, "fee": 0, "settlement_date": "2024-05-03"}]',
        b'{"lines": []}',
        b"\xff\xfe invoice",
    ],
)
def test_an_unreadable_file_or_a_missing_column_is_report_invalid(content):
    with pytest.raises(errors.SettlementReportInvalid) as raised:
        parse_report(content)
    assert raised.value.code == "settlement_report_invalid"


def test_headers_match_ignoring_case_spaces_and_a_byte_order_mark():
    content = "\ufeff Invoice_Number ,GROSS_AMOUNT,Fee,net_amount,Settlement_Date\nINV-1,100,0,100,2024-05-03\n"
    (line,) = parse_report(content.encode()).lines
    assert (line.invoice_number, line.gross, line.settled_on) == ("INV-1", 100, date(2024, 5, 3))


def test_settlement_dates_with_a_time_are_read_in_wib():
    content = b"invoice_number,gross_amount,fee,net_amount,settlement_date\nA,1,0,1,2024-05-03T20:00:00Z\n"
    (line,) = parse_report(content).lines
    assert line.settled_on == date(2024, 5, 4)  # 03:00 WIB the next day


def test_every_row_is_a_line_of_its_kind_and_an_unknown_type_is_an_exception_never_skipped():
    mapping = mapping_from_spec("type=kind,payment_types=SALE|PAYMENT")
    content = (
        b"kind,invoice_number,gross_amount,fee,net_amount,settlement_date\n"
        b"SALE,A,1,0,1,2024-05-03\nrefund,A,-1,0,-1,2024-05-03\n payment ,B,2,0,2,2024-05-03\n,C,3,0,3,2024-05-03\n"
        b"TOTAL,,6,0,6,2024-05-03\n"
    )
    report = parse_report(content, mapping)
    got = [(line.line_no, line.invoice_number, line.kind, line.problem) for line in report.lines]
    assert got == [
        (1, "A", "payment", None),
        (2, "A", "refund", None),
        (3, "B", "payment", None),
        (4, "C", "unknown", UNKNOWN_LINE_TYPE),  # a blank type is not a type the mapping knows
        (5, None, "unknown", UNKNOWN_LINE_TYPE),
    ]
    assert report.skipped == 0


def test_mapping_from_spec_changes_only_what_it_names():
    mapping = mapping_from_spec("invoice_number=Invoice, gross=Amount,settled_on=")
    assert (mapping.invoice_number, mapping.gross, mapping.fee) == ("Invoice", "Amount", "fee")
    assert mapping.settled_on is None
    assert mapping_from_spec(None) == DEFAULT_MAPPING
    assert mapping_from_spec({"fee": "MDR"}) == msgspec.structs.replace(DEFAULT_MAPPING, fee="MDR")
    for bad in ("invoice=Invoice", "gross", {"number_format": "1 234"}):
        with pytest.raises(errors.SettlementReportInvalid):
            mapping_from_spec(bad)


def test_format_is_detected_from_the_first_byte():
    assert detect_format(b'  [{"a": 1}]') == "json"
    assert detect_format(b"\xef\xbb\xbfinvoice_number,gross") == "csv"


TYPED = b"type,invoice_number,gross_amount,fee,net_amount,settlement_date,request_id\n"


def test_a_refund_row_is_a_deduction_whichever_sign_it_is_written_with():
    content = TYPED + b"REFUND,A,-85000,0,-85000,2024-05-06,rf-1\nREFUND,A,85000,1000,84000,2024-05-06,\n"
    first, second = parse_report(content).lines
    assert (first.kind, first.gross, first.fee, first.net, first.reference, first.problem) == (
        "refund",
        -85_000,
        0,
        -85_000,
        "rf-1",
        None,
    )
    assert (second.gross, second.fee, second.net, second.reference, second.problem) == (
        -85_000,
        -1_000,
        -84_000,
        None,
        None,
    )


def test_a_deduction_with_amounts_of_both_signs_or_of_nothing_is_unreadable():
    content = (
        TYPED + b"REFUND,A,-85000,0,85000,2024-05-06,\nCHARGEBACK,A,0,0,0,2024-05-06,\nREFUND,,-1,0,-1,2024-05-06,\n"
    )
    lines = parse_report(content).lines
    assert [line.problem for line in lines] == [INVALID_LINE, INVALID_LINE, INVALID_LINE]
    assert "one sign" in (lines[0].detail or "") and "invoice_number" in (lines[2].detail or "")


def test_adjustments_and_fee_corrections_are_their_signed_net_and_may_name_no_order():
    content = (
        TYPED
        + b"ADJUSTMENT,,,,-2500,2024-05-06,\nADJUSTMENT,INV-9,10000,500,9500,2024-05-06,\n"
        + b"FEE_CORRECTION,,,,775,2024-05-06,\nFEE_CORRECTION,,,-775,775,2024-05-06,\n"
        + b"FEE_CORRECTION,,5,,775,2024-05-06,\n"
        + b"ADJUSTMENT,,,,0,2024-05-06,\n"
    )
    got = [
        (line.kind, line.invoice_number, line.gross, line.fee, line.net, line.problem)
        for line in parse_report(content).lines
    ]
    assert got[:4] == [
        ("adjustment", None, -2_500, 0, -2_500, None),
        ("adjustment", "INV-9", 10_000, 500, 9_500, None),
        ("fee_correction", None, 0, -775, 775, None),
        ("fee_correction", None, 0, -775, 775, None),
    ]
    assert [line.problem for line in parse_report(content).lines[4:]] == [INVALID_LINE, INVALID_LINE]


def test_a_report_without_a_type_column_is_payments_only_and_a_json_report_has_types_too():
    (line,) = parse_report(b"invoice_number,gross_amount,fee,net_amount,settlement_date\nA,100,1,99,2024-05-06\n").lines
    assert (line.kind, line.type_label, line.problem) == ("payment", None, None)
    content = (
        b'[{"type": "PAYMENT", "invoice_number": "A", "gross_amount": 100, "fee": 1, "net_amount": 99},'
        b' {"type": "REFUND", "invoice_number": "A", "gross_amount": -10, "net_amount": -10, "request_id": 7},'
        b' {"invoice_number": "B", "gross_amount": 5, "fee": 0, "net_amount": 5}]'
    )
    mapping = mapping_from_spec("settled_on=")
    got = [(line.kind, line.reference, line.fee, line.problem) for line in parse_report(content, mapping).lines]
    assert got == [("payment", None, 1, None), ("refund", "7", 0, None), ("unknown", None, 0, UNKNOWN_LINE_TYPE)]


def test_type_lists_come_from_the_mapping_spec():
    mapping = mapping_from_spec("type=Kind,refund_types=RETUR|REFUND,payment_types=SALE")
    assert (mapping.type, mapping.refund_types, mapping.payment_types) == ("Kind", ("RETUR", "REFUND"), ("SALE",))
    assert [mapping.kind_of(t) for t in ("sale", " Retur ", "PAYMENT", "", None)] == [
        "payment",
        "refund",
        "unknown",
        "unknown",
        "unknown",
    ]
    assert mapping_from_spec("type=,reference=").type is None
