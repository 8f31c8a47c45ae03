"""Wire messages: byte-exact requests, lenient decoding of what DOKU sends, rules as data."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jenius.errors import MalformedMessage
from jenius.messages import (
    Customer,
    LineItem,
    OrderEcho,
    ReportColumn,
    SettlementShare,
    build_payment_request,
    decode_error_answer,
    decode_notification,
    encoder,
    payment_request_decoder,
    payment_request_problems,
    status_response_decoder,
)
from tests.jenius.conftest import payment
from tests.jenius.test_signing import VECTOR_BODY


def sample() -> msgspec.Struct:
    return build_payment_request(
        invoice_number="DOKU202212345828",
        amount=50_000,
        line_items=(LineItem(name="Ayam", price=40_000, quantity=1), LineItem(name="Roti", price=10_000, quantity=1)),
        customer=Customer(name="Astari", email="Astari@doku.com", phone="081288910205"),
        redirect_url="https://test.com/redirect",
        cash_tag="$admin",
    )


def test_dokus_sample_request_encodes_to_the_signed_vector_bytes() -> None:
    assert encoder.encode(sample()) == VECTOR_BODY


def test_the_vector_bytes_decode_and_reencode_unchanged() -> None:
    assert encoder.encode(payment_request_decoder.decode(VECTOR_BODY)) == VECTOR_BODY


def test_amount_travels_as_a_string_in_requests() -> None:
    decoded = msgspec.json.decode(encoder.encode(payment(amount=75_000)))
    assert decoded["order"]["amount"] == "75000"


def test_amounts_must_be_ints() -> None:
    with pytest.raises(TypeError):
        payment(amount=50_000.0)  # type: ignore[arg-type]


def test_split_settlement_and_report_columns_go_in_additional_info() -> None:
    req = payment(
        settlement=(SettlementShare(bank_account_settlement_id="SBA-1", value=10, type="PERCENTAGE"),),
        hold_settlement=True,
        report=(ReportColumn(key="ledger_order", value="ord_1"),),
    )
    assert msgspec.to_builtins(req.additional_info) == {
        "settlement": [{"bank_account_settlement_id": "SBA-1", "value": 10, "type": "PERCENTAGE"}],
        "hold_settlement": True,
        "report": [{"key": "ledger_order", "value": "ord_1"}],
    }


def test_a_valid_request_has_no_problems() -> None:
    assert payment_request_problems(payment()) == ()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"invoice_number": "X" * 65}, "invalid_invoice_number"),
        ({"invoice_number": ""}, "invalid_invoice_number"),
        ({"amount": 9_999, "line_items": ()}, "amount_out_of_range"),
        ({"amount": 100_000_001, "line_items": ()}, "amount_out_of_range"),
        ({"line_items": (LineItem(name="a", price=1, quantity=1),)}, "line_items_mismatch"),
        ({"line_items": (LineItem(name="a", price=50_000, quantity=0),)}, "invalid_line_items"),
        ({"cash_tag": "admin"}, "invalid_cash_tag"),
        ({"redirect_url": ""}, "invalid_redirect_url"),
    ],
)
def test_each_broken_rule_is_reported_with_its_code(overrides: dict[str, object], code: str) -> None:
    assert [p.code for p in payment_request_problems(payment(**overrides))] == [code]


def test_amount_range_bounds_are_inclusive_and_configurable() -> None:
    assert payment_request_problems(payment(amount=10_000, line_items=())) == ()
    assert payment_request_problems(payment(amount=100_000_000, line_items=())) == ()
    problems = payment_request_problems(payment(amount=20_000, line_items=()), min_amount=30_000, max_amount=40_000)
    assert [p.code for p in problems] == ["amount_out_of_range"]


def test_all_problems_come_back_at_once() -> None:
    req = payment(invoice_number="X" * 65, cash_tag="nope", line_items=(LineItem(name="a", price=1, quantity=1),))
    assert {p.code for p in payment_request_problems(req)} == {
        "invalid_invoice_number",
        "line_items_mismatch",
        "invalid_cash_tag",
    }


@pytest.mark.parametrize("text", ["", "-5", "5e4", "50000.00", " 50000", "1234567890123", "\uff15\uff10"])
def test_non_digit_amount_strings_are_invalid(text: str) -> None:
    req = msgspec.structs.replace(payment(), order=msgspec.structs.replace(payment().order, amount=text))
    assert "invalid_amount" in {p.code for p in payment_request_problems(req)}


NOTIFICATION = (
    b'{"service":{"id":"X"},"acquirer":{"id":"Y"},"channel":{"id":"Z"},'
    b'"order":{"invoice_number":"DOKU202212345828","amount":50000},'
    b'"transaction":{"status":"SUCCESS","date":"2021-07-07T08:50:00Z","original_request_id":"rid-1"}}'
)


def test_a_notification_decodes_with_a_numeric_amount() -> None:
    n = decode_notification(NOTIFICATION)
    assert (n.order.invoice_number, n.order.amount, n.transaction.status) == ("DOKU202212345828", 50_000, "SUCCESS")
    assert n.transaction.original_request_id == "rid-1"


@pytest.mark.parametrize("amount", [b"50000", b'"50000"', b"50000.00", b"50000.0"])
def test_notification_amounts_compare_numerically_whatever_their_json_form(amount: bytes) -> None:
    body = NOTIFICATION.replace(b'"amount":50000', b'"amount":' + amount)
    assert decode_notification(body).order.amount == 50_000


def test_unknown_notification_fields_are_ignored() -> None:
    body = NOTIFICATION.replace(b'"order":{', b'"virtual_account_info":{"x":[1,2]},"order":{"extra":true,')
    assert decode_notification(body).order.amount == 50_000


def test_only_order_and_transaction_are_required() -> None:
    n = decode_notification(b'{"order":{"invoice_number":"A","amount":1},"transaction":{"status":"FAILED"}}')
    assert n.service is None and n.transaction.original_request_id is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"order":{"invoice_number":"A","amount":1}}',
        b'{"order":{"invoice_number":"A","amount":1.5},"transaction":{"status":"SUCCESS"}}',
        b'{"order":{"invoice_number":"A","amount":-1},"transaction":{"status":"SUCCESS"}}',
        b'{"order":{"invoice_number":"A","amount":"lots"},"transaction":{"status":"SUCCESS"}}',
    ],
)
def test_malformed_notifications_raise_malformed_message(body: bytes) -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode_notification(body)
    assert caught.value.code == "malformed_message"


def test_status_answers_share_the_notification_shape() -> None:
    assert status_response_decoder.decode(NOTIFICATION).order.amount == 50_000


@pytest.mark.parametrize(("amount", "expected"), [("50000", 50_000), (50_000, 50_000)])
def test_echoed_amounts_accept_string_or_number(amount: str | int, expected: int) -> None:
    assert OrderEcho(invoice_number="A", amount=amount).amount_idr == expected


@pytest.mark.parametrize("amount", ["5e4", "-1", -1, ""])
def test_bad_echoed_amounts_are_malformed(amount: str | int) -> None:
    with pytest.raises(MalformedMessage):
        OrderEcho(invoice_number="A", amount=amount).amount_idr  # noqa: B018


def test_error_answers_are_recognised_by_shape() -> None:
    detail = decode_error_answer(b'{"error":{"code":"invalid_signature","message":"m","type":"unauthorized"}}')
    assert detail is not None and detail.code == "invalid_signature"
    assert decode_error_answer(b'{"order":{}}') is None
    assert decode_error_answer(b"<html>") is None


@given(amount=st.integers(min_value=0, max_value=999_999_999_999))
def test_any_whole_rupiah_amount_round_trips_through_a_notification(amount: int) -> None:
    body = NOTIFICATION.replace(b'"amount":50000', b'"amount":' + str(amount).encode())
    assert decode_notification(body).order.amount == amount
