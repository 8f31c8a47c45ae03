"""The pure rules behind the API's input checks: text without control characters, JSON nesting
depth, DOKU's base URL and refund path, the token buckets of the rate limits, and the problems
``decode_strict`` makes of msgspec's errors."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.bodies import decode_strict
from api.problems import ApiError
from api.ratelimit import TokenBuckets, retry_after
from jenius.errors import MalformedMessage
from jenius.messages import decode_notification, json_nesting_exceeds
from ledger.gateway_urls import base_url_problem, refund_path_problem
from ledger.text import is_clean_text


def test_control_characters_and_lone_surrogates_are_not_text() -> None:
    for bad in ("\x00", "a\x07", "\x1b[31m", "\x7f", "\x85", "\x9f", "\ud800"):
        assert not is_clean_text(bad), repr(bad)
    for good in ("", "Toko\tBaru\r\nJakarta", "Rp 10.000", "é İ 😀", "\xa0", "ß"):
        assert is_clean_text(good), repr(good)


@given(st.recursive(st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)))
def test_nesting_depth_agrees_with_the_decoded_value(value: Any) -> None:
    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    body = msgspec.json.encode(value)
    for limit in range(6):
        assert json_nesting_exceeds(body, limit) == (depth(value) > limit)


def test_brackets_inside_strings_do_not_count() -> None:
    assert not json_nesting_exceeds(msgspec.json.encode({"a": "[[[[[[[[" * 10, "b": '\\"[[[['}), 2)
    assert json_nesting_exceeds(b"[" * 100_000 + b"]" * 100_000, 32)


class Item(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class Body(msgspec.Struct, forbid_unknown_fields=True):
    items: list[Item]
    meta: dict[str, Any] = {}


@pytest.mark.parametrize(
    ("raw", "code", "path"),
    [
        (b'{"items": [{"name": "a", "nmae": 1}]}', "unknown_field", "$.items[0].nmae"),
        (b'{"items": [], "extra": 1}', "unknown_field", "$.extra"),
        (b'{"items": [{"name": 5}]}', "invalid_request", "$.items[0].name"),
        (b'{"items": [{"name": "a\\u0000"}]}', "invalid_text", "$.items[0].name"),
        (b'{"items": [], "meta": {"k": ["x", "\\u001b"]}}', "invalid_text", "$.meta.k[1]"),
        (b'{"items": [], "meta": {"\\u0007": 1}}', "invalid_text", "$.meta"),
        (b'{"items": [{"name": "\xc2\x85"}]}', "invalid_text", "$.items[0].name"),
        (b'{"items": [{"name": "\xff"}]}', "malformed_json", None),
        (b'{"items": [', "malformed_json", None),
        (b'{"items": [], "meta": ' + b"[" * 40 + b"]" * 40 + b"}", "nesting_too_deep", None),
    ],
)
def test_decode_strict_names_the_problem_and_where(raw: bytes, code: str, path: str | None) -> None:
    with pytest.raises(ApiError) as refused:
        decode_strict(raw, Body)
    assert refused.value.code == code
    if path is not None:
        assert refused.value.errors is not None and refused.value.errors[0]["path"] == path


def test_decode_strict_lets_escaped_but_harmless_text_through() -> None:
    body = decode_strict(b'{"items": [{"name": "tab\\there \\u00e9 \\ud83d\\ude00 \\\\u0000"}]}', Body)
    assert body.items[0].name == "tab\there é 😀 \\u0000"


def test_the_notification_decoder_refuses_without_crashing() -> None:
    for raw in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"order": ' * 3_000 + b"1" + b"}" * 3_000,
        b'{"order":{"invoice_number":"\xff","amount":1},"transaction":{"status":"SUCCESS"}}',
        b'{"order":{"invoice_number":"I\\u0000","amount":1},"transaction":{"status":"SUCCESS"}}',
        b'{"order":{"invoice_number":"I","amount":1},"transaction":{"status":"SUCCESS","date":"\\u001b"}}',
    ):
        with pytest.raises(MalformedMessage):
            decode_notification(raw)
    kept = decode_notification(
        b'{"order":{"invoice_number":"I","amount":"5"},"transaction":{"status":"SUCCESS"},"new":{"x":[1]}}'
    )
    assert kept.order.amount == 5  # lenient as before: unknown fields ignored, a string amount converted


def test_base_url_rules() -> None:
    assert base_url_problem("https://api.doku.com", allow_loopback_http=False) is None
    assert base_url_problem("https://api-sandbox.doku.com:8443/prefix", allow_loopback_http=False) is None
    assert base_url_problem("http://127.0.0.1:8070", allow_loopback_http=True) is None
    assert base_url_problem("http://127.0.0.1:8070", allow_loopback_http=False) is not None
    for bad in (
        "http://api.doku.com",
        "http://192.168.1.1",
        "http://127.0.0.1.evil.example",
        "https://u:p@api.doku.com",
        "https://api.doku.com/#x",
        "https://api.doku.com/?x",
        "gopher://api.doku.com",
        "https://api.doku.com/a b",
        "https://api.doku.com:0",
        "",
    ):
        assert base_url_problem(bad, allow_loopback_http=True) is not None, bad
    assert refund_path_problem("/jenius-digital-banking/v2/ServiceRefund") is None
    for bad in ("//evil.example/x", "x", "/x?y", "/x#y", "/x y", "/%2e%2e"):
        assert refund_path_problem(bad) is not None, bad


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(2.0, 3, clock=lambda: now[0])
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == pytest.approx(0.5)
    assert buckets.take("other") == 0.0  # one bucket per key
    now[0] += 0.5
    assert buckets.take("k") == 0.0
    assert buckets.take("k") > 0
    now[0] += 100
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]  # refilled to the burst, no further
    assert buckets.take("k") > 0
    assert retry_after(0.01) == "1" and retry_after(1.2) == "2"


def test_buckets_keep_at_most_max_keys() -> None:
    buckets = TokenBuckets(1.0, 1, clock=lambda: 0.0, max_keys=10)
    for n in range(1_000):
        buckets.take(f"key-{n}")
    assert len(buckets._buckets) == 10
