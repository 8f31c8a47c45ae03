"""Checking a notification DOKU sent us: signature over raw bytes and our own path, then freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jenius import signing
from jenius.client import DEFAULT_NOTIFICATION_MAX_AGE, notification_client_id, verify_notification
from jenius.errors import InvalidSignature, MalformedMessage, StaleTimestamp
from tests.jenius.conftest import CLIENT_ID, NOTIFY_PATH, SECRET_KEY
from tests.jenius.test_messages import NOTIFICATION

SENT_AT = datetime(2024, 5, 2, 3, 15, tzinfo=UTC)


def signed_headers(body: bytes = NOTIFICATION, *, path: str = NOTIFY_PATH, at: datetime = SENT_AT) -> dict[str, str]:
    timestamp = signing.format_timestamp(at)
    return {
        "Client-Id": CLIENT_ID,
        "Request-Id": "notif-1",
        "Request-Timestamp": timestamp,
        "Signature": signing.sign(
            secret_key=SECRET_KEY,
            client_id=CLIENT_ID,
            request_id="notif-1",
            timestamp=timestamp,
            target=path,
            body=body,
        ),
    }


def check(headers: dict[str, str], body: bytes = NOTIFICATION, **overrides: object):
    arguments: dict[str, object] = {
        "headers": headers,
        "body": body,
        "secret_key": SECRET_KEY,
        "notification_path": NOTIFY_PATH,
        "now": SENT_AT + timedelta(seconds=2),
        "max_age": DEFAULT_NOTIFICATION_MAX_AGE,
    }
    arguments.update(overrides)
    return verify_notification(**arguments)  # type: ignore[arg-type]


def test_a_genuine_notification_is_returned_decoded() -> None:
    notification = check(signed_headers())
    assert (notification.order.invoice_number, notification.order.amount) == ("DOKU202212345828", 50_000)
    assert notification.transaction.original_request_id == "rid-1"


def test_header_names_are_matched_case_insensitively() -> None:
    lowered = {k.lower(): v for k, v in signed_headers().items()}
    assert check(lowered).transaction.status == "SUCCESS"
    assert notification_client_id(lowered) == CLIENT_ID


@pytest.mark.parametrize("index", [0, 10, len(NOTIFICATION) // 2, len(NOTIFICATION) - 1])
def test_one_changed_byte_of_the_received_body_is_rejected(index: int) -> None:
    tampered = bytearray(NOTIFICATION)
    tampered[index] ^= 0x01
    with pytest.raises(InvalidSignature):
        check(signed_headers(), bytes(tampered))


def test_re_serialised_json_is_not_the_received_bytes() -> None:
    spaced = NOTIFICATION.replace(b'":', b'": ')
    with pytest.raises(InvalidSignature):
        check(signed_headers(), spaced)


@pytest.mark.parametrize("name", ["Client-Id", "Request-Id", "Request-Timestamp", "Signature"])
def test_one_changed_header_is_rejected(name: str) -> None:
    headers = signed_headers()
    value = headers[name]
    headers[name] = value[:-2] + ("0" if value[-2] != "0" else "1") + value[-1]
    with pytest.raises(InvalidSignature):
        check(headers)


@pytest.mark.parametrize("name", ["Client-Id", "Request-Id", "Request-Timestamp", "Signature"])
def test_a_missing_header_is_rejected(name: str) -> None:
    headers = signed_headers()
    del headers[name]
    with pytest.raises(InvalidSignature):
        check(headers)


def test_a_notification_signed_for_another_path_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        check(signed_headers(path="/hooks/other"))


def test_the_query_string_of_our_notification_url_is_not_signed() -> None:
    assert check(signed_headers(), notification_path=NOTIFY_PATH + "?platform=1").order.amount == 50_000


def test_another_merchants_key_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        check(signed_headers(), secret_key="SK-someone-else")


@pytest.mark.parametrize("age", [timedelta(0), timedelta(hours=18, minutes=30), timedelta(hours=24)])
def test_resends_within_the_window_pass(age: timedelta) -> None:
    assert check(signed_headers(), now=SENT_AT + age).transaction.status == "SUCCESS"


@pytest.mark.parametrize("offset", [timedelta(hours=24, seconds=1), timedelta(minutes=-6)])
def test_timestamps_outside_the_window_are_stale(offset: timedelta) -> None:
    with pytest.raises(StaleTimestamp) as caught:
        check(signed_headers(), now=SENT_AT + offset)
    assert caught.value.code == "stale_timestamp"


def test_the_window_is_configurable_and_can_be_switched_off() -> None:
    with pytest.raises(StaleTimestamp):
        check(signed_headers(), now=SENT_AT + timedelta(minutes=2), max_age=timedelta(minutes=1))
    assert check(signed_headers(), now=SENT_AT + timedelta(days=30), max_age=None).order.amount == 50_000


def test_the_signature_is_checked_before_freshness() -> None:
    with pytest.raises(InvalidSignature):
        check(signed_headers(), secret_key="SK-wrong", now=SENT_AT + timedelta(days=3))


def test_a_signed_body_of_the_wrong_shape_is_malformed() -> None:
    body = b'{"hello":"world"}'
    with pytest.raises(MalformedMessage):
        check(signed_headers(body), body)


def test_a_notification_without_client_id_names_no_merchant() -> None:
    with pytest.raises(InvalidSignature):
        notification_client_id({"Request-Id": "x"})
