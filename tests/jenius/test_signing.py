"""DOKU's non-SNAP signature: the shared test vector, and any one changed byte is rejected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jenius import signing

VECTOR_BODY = (
    b'{"order":{"invoice_number":"DOKU202212345828","amount":"50000","line_items":[{"name":"Ayam","price":40000,'
    b'"quantity":1},{"name":"Roti","price":10000,"quantity":1}]},"additional_info":{},"customer":{"name":"Astari",'
    b'"email":"Astari@doku.com","phone":"081288910205"},"redirect_url":"https://test.com/redirect",'
    b'"jenius_info":{"cash_tag":"$admin"}}'
)
VECTOR = {
    "secret_key": "SK-test-secret-123",
    "client_id": "MCH-0001-10791114622547",
    "request_id": "baec7d95-f30a-4b78-b711-6ebe0ccdf50b",
    "timestamp": "2021-07-07T08:45:42Z",
    "target": "/jenius-digital-banking/v2/ServiceRequestPayment",
}
VECTOR_DIGEST = "Ae5CRvyVrRROiTyS3+rEsVPpWo5CNCQJQp1ld+YzMeM="
VECTOR_SIGNATURE = "HMACSHA256=GDZK9vFEyzmjz9K91kO+jIR9PS6nSzqlnFU3e6QqTs0="


def test_digest_matches_the_shared_vector() -> None:
    assert signing.digest(VECTOR_BODY) == VECTOR_DIGEST
    assert signing.digest(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert signing.digest(b"{}") == "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="


def test_signature_matches_the_shared_vector() -> None:
    assert signing.sign(**VECTOR, body=VECTOR_BODY) == VECTOR_SIGNATURE
    assert signing.verify(**VECTOR, body=VECTOR_BODY, signature=VECTOR_SIGNATURE)


def test_string_to_sign_has_five_lines_for_post_and_four_for_get() -> None:
    args = {k: v for k, v in VECTOR.items() if k != "secret_key"}
    post = signing.string_to_sign(**args, digest=VECTOR_DIGEST)
    get = signing.string_to_sign(**args, digest=None)
    assert post.split("\n") == [
        "Client-Id:MCH-0001-10791114622547",
        "Request-Id:baec7d95-f30a-4b78-b711-6ebe0ccdf50b",
        "Request-Timestamp:2021-07-07T08:45:42Z",
        "Request-Target:/jenius-digital-banking/v2/ServiceRequestPayment",
        f"Digest:{VECTOR_DIGEST}",
    ]
    assert get.split("\n") == post.split("\n")[:4]
    assert not post.endswith("\n")


def test_a_get_signature_differs_from_a_post_with_an_empty_body() -> None:
    assert signing.sign(**VECTOR, body=None) != signing.sign(**VECTOR, body=b"")


def test_a_response_signature_uses_the_response_timestamp_label() -> None:
    args = {k: v for k, v in VECTOR.items() if k != "secret_key"}
    text = signing.string_to_sign(**args, digest=None, timestamp_label=signing.RESPONSE_TIMESTAMP)
    assert text.split("\n")[2] == "Response-Timestamp:2021-07-07T08:45:42Z"
    request_sig = signing.sign(**VECTOR, body=b"{}")
    response_sig = signing.sign(**VECTOR, body=b"{}", timestamp_label=signing.RESPONSE_TIMESTAMP)
    assert request_sig != response_sig


@given(index=st.integers(min_value=0, max_value=len(VECTOR_BODY) - 1), delta=st.integers(min_value=1, max_value=255))
def test_one_changed_byte_of_the_body_is_rejected(index: int, delta: int) -> None:
    tampered = bytearray(VECTOR_BODY)
    tampered[index] = (tampered[index] + delta) % 256
    assert not signing.verify(**VECTOR, body=bytes(tampered), signature=VECTOR_SIGNATURE)


@pytest.mark.parametrize("component", ["client_id", "request_id", "timestamp", "target", "secret_key"])
@given(data=st.data())
def test_one_changed_character_of_any_component_is_rejected(component: str, data: st.DataObject) -> None:
    value = VECTOR[component]
    index = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != value[index]))
    changed = {**VECTOR, component: value[:index] + replacement + value[index + 1 :]}
    assert not signing.verify(**changed, body=VECTOR_BODY, signature=VECTOR_SIGNATURE)


@given(index=st.integers(min_value=len("HMACSHA256="), max_value=len(VECTOR_SIGNATURE) - 1))
def test_one_changed_character_of_the_signature_is_rejected(index: int) -> None:
    flipped = "A" if VECTOR_SIGNATURE[index] != "A" else "B"
    tampered = VECTOR_SIGNATURE[:index] + flipped + VECTOR_SIGNATURE[index + 1 :]
    assert not signing.verify(**VECTOR, body=VECTOR_BODY, signature=tampered)


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "GDZK9vFEyzmjz9K91kO+jIR9PS6nSzqlnFU3e6QqTs0=",
        "hmacsha256=GDZK9vFEyzmjz9K91kO+jIR9PS6nSzqlnFU3e6QqTs0=",
        "HMACSHA256=é",
    ],
)
def test_signatures_without_the_exact_prefix_or_value_are_rejected(signature: str) -> None:
    assert not signing.verify(**VECTOR, body=VECTOR_BODY, signature=signature)


def test_verification_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = signing.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    assert signing.verify(**VECTOR, body=VECTOR_BODY, signature=VECTOR_SIGNATURE)
    assert calls == [(VECTOR_SIGNATURE.encode(), VECTOR_SIGNATURE.encode())]


@given(body=st.binary(max_size=512), secret=st.text(min_size=1, max_size=40))
def test_what_is_signed_verifies(body: bytes, secret: str) -> None:
    args = {**VECTOR, "secret_key": secret}
    assert signing.verify(**args, body=body, signature=signing.sign(**args, body=body))


def test_timestamps_are_utc_seconds_with_z() -> None:
    wib = timezone(timedelta(hours=7))
    assert signing.format_timestamp(datetime(2021, 7, 7, 15, 45, 42, 987_000, tzinfo=wib)) == "2021-07-07T08:45:42Z"
    assert signing.parse_timestamp("2021-07-07T08:45:42Z") == datetime(2021, 7, 7, 8, 45, 42, tzinfo=UTC)
    with pytest.raises(ValueError):
        signing.format_timestamp(datetime(2021, 7, 7, 8, 45, 42))
    for bad in ("2021-07-07T08:45:42.000Z", "2021-07-07 08:45:42Z", "2021-07-07T08:45:42+00:00", ""):
        with pytest.raises(ValueError):
            signing.parse_timestamp(bad)


def test_freshness_window_bounds_past_and_future() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    window = {"now": now, "max_age": timedelta(hours=24), "max_future": timedelta(minutes=5)}
    assert signing.is_fresh(now - timedelta(hours=24), **window)
    assert not signing.is_fresh(now - timedelta(hours=24, seconds=1), **window)
    assert signing.is_fresh(now + timedelta(minutes=5), **window)
    assert not signing.is_fresh(now + timedelta(minutes=5, seconds=1), **window)


def test_request_target_drops_the_query_string() -> None:
    assert signing.request_target("/hooks/doku?x=1") == "/hooks/doku"
    assert signing.request_target("/orders/v1/status/INV%2F1") == "/orders/v1/status/INV%2F1"
