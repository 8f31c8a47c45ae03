"""The pure rules of webhooks: the signature a receiver checks, the retry schedule, which URLs may
receive events, and what an endpoint may subscribe to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import errors, events, webhooks
from ledger.webhooks import check_url, next_attempt_at, retry_delay_s, signature_header, verify_signature

SECRET = "whsec_test"
NOW = 1_800_000_000


def test_a_signed_body_verifies_and_the_header_has_the_documented_shape() -> None:
    body = b'{"id":"evt_1","type":"order.captured"}'
    header = signature_header(SECRET, NOW, body)
    stamp, mac = header.split(",")
    assert stamp == f"t={NOW}"
    assert mac.startswith("v1=") and len(mac) == 3 + 64 and int(mac[3:], 16) >= 0
    assert verify_signature(SECRET, header, body, now=NOW)


@given(body=st.binary(max_size=200), flip=st.integers(min_value=0, max_value=199))
def test_any_changed_byte_fails_the_check(body: bytes, flip: int) -> None:
    header = signature_header(SECRET, NOW, body)
    assert verify_signature(SECRET, header, body, now=NOW)
    if body:
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
        assert not verify_signature(SECRET, header, tampered, now=NOW)
    assert not verify_signature(SECRET, header, body + b" ", now=NOW)


def test_a_wrong_secret_an_old_or_future_timestamp_and_malformed_headers_fail() -> None:
    body = b"{}"
    assert not verify_signature("whsec_other", signature_header(SECRET, NOW, body), body, now=NOW)
    old = signature_header(SECRET, NOW - 301, body)
    assert not verify_signature(SECRET, old, body, now=NOW)  # a delivery replayed five minutes later
    assert verify_signature(SECRET, signature_header(SECRET, NOW - 299, body), body, now=NOW)
    assert not verify_signature(SECRET, signature_header(SECRET, NOW + 301, body), body, now=NOW)
    # the timestamp is signed: moving it forward breaks the signature
    forged = old.replace(f"t={NOW - 301}", f"t={NOW}")
    assert not verify_signature(SECRET, forged, body, now=NOW)
    for header in ("", "t=,v1=", f"t={NOW}", "v1=abc", f"t=x{NOW},v1=00", "garbage"):
        assert not verify_signature(SECRET, header, body, now=NOW)


def test_the_first_retries_come_within_seconds_then_grow_with_jitter() -> None:
    for failures, base in ((1, 1), (2, 5), (3, 30)):
        assert retry_delay_s(failures, 0.0) == pytest.approx(base * 0.8)
        assert retry_delay_s(failures, 0.999999) == pytest.approx(base * 1.2, rel=1e-5)
    bases = [retry_delay_s(n, 0.5) for n in range(1, 20)]
    assert bases == sorted(bases) and bases[-1] == pytest.approx(12 * 3600)
    assert retry_delay_s(2, 0.5, scale=0.001) == pytest.approx(0.005)


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
@pytest.mark.parametrize("scale", [1.0, 0.001])
def test_a_failing_delivery_is_retried_for_at_least_three_days_then_given_up(jitter: float, scale: float) -> None:
    created = datetime(2026, 11, 24, tzinfo=UTC)
    now, failures, attempts = created, 0, [created]
    while True:
        failures += 1
        retry = next_attempt_at(failures, created, now, jitter, scale=scale)
        if retry is None:
            break
        assert retry > now
        now = retry
        attempts.append(now)
    window = timedelta(seconds=3 * 24 * 3600 * scale)
    assert attempts[-1] - created >= window  # the attempt that gave up came after three days
    assert attempts[-2] - created < window
    assert 12 <= len(attempts) <= 20  # a handful of attempts, not thousands


def test_https_urls_are_accepted_and_loopback_only_when_allowed() -> None:
    assert check_url("https://toko.example/hooks?x=1", allow_loopback=False) == "https://toko.example/hooks?x=1"
    for url in ("http://127.0.0.1:8088/hooks", "https://localhost/h", "http://[::1]:9/h", "http://127.9.9.9/h"):
        with pytest.raises(errors.WebhookUrlInvalid) as refused:
            check_url(url, allow_loopback=False)
        assert refused.value.code == "invalid_webhook_url"
        assert check_url(url, allow_loopback=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://toko.example/hooks",  # not https
        "ftp://toko.example/x",
        "/hooks",
        "toko.example/hooks",
        "https://",
        "https://user:pw@toko.example/h",
        "https://toko.example/h#frag",
        "https://10.0.0.5/h",
        "https://192.168.1.1/h",
        "https://169.254.169.254/latest/meta-data",
        "https://0.0.0.0/h",
        "https://[fd00::1]/h",
        "https://toko.example:99999/h",
        "https://toko.example/" + "a" * 2100,
    ],
)
def test_urls_that_cannot_receive_webhooks_are_refused(url: str) -> None:
    with pytest.raises(errors.WebhookUrlInvalid):
        check_url(url, allow_loopback=True)


def test_an_endpoint_subscribes_to_known_types_or_to_everything() -> None:
    assert events.check_subscription(["order.captured", "refund.succeeded", "order.captured"]) == (
        "order.captured",
        "refund.succeeded",
    )
    assert events.check_subscription(["*"]) == ("*",)
    for bad in ([], ["order.capture"], ["*", "order.captured"], ["ORDER.CAPTURED"]):
        with pytest.raises(errors.UnknownEventType) as refused:
            events.check_subscription(bad)
        assert refused.value.code == "unknown_event_type"
    assert events.is_subscribed(["*"], "payout.paid") and not events.is_subscribed(["payout.failed"], "payout.paid")


def test_the_issue_lists_every_event_type() -> None:
    named = [
        *("order.created", "order.captured", "order.failed", "order.expired"),
        *("refund.created", "refund.succeeded", "refund.failed", "settlement.imported"),
        *("payout.created", "payout.paid", "payout.failed"),
        *("reconciliation.exception_opened", "reconciliation.exception_resolved"),
    ]
    assert set(named) <= set(events.EVENT_TYPES)
    assert set(events.EVENT_TYPES) - set(named) == {"webhook_endpoint.disabled"}


def test_cursors_are_positions_and_nothing_else_decodes() -> None:
    assert events.decode_cursor(events.encode_cursor(42)) == 42
    for bad in ("", "-1", "1.5", "abc", "٣", "9" * 20):
        with pytest.raises(ValueError):
            events.decode_cursor(bad)


def test_webhook_secrets_are_long_and_random() -> None:
    a, b = webhooks.new_endpoint_secret(), webhooks.new_endpoint_secret()
    assert a != b and a.startswith("whsec_") and len(a) > 40
