"""Hostile requests by hand, each answered 4xx problem+json with its stable ``code`` and never a
5xx: integers beyond their bounds (int64 ids, limits), NUL and control characters in text, JSON
nested too deep, invalid UTF-8, dates out of range, a JSON body under another Content-Type,
misspelled fields, and DOKU notifications that are correctly signed but hostile. Nothing of any of
them is written."""

from __future__ import annotations

import base64

import msgspec
import pytest

from tests.api.conftest import CLIENT_ID, Stack, assert_problem, notification_body, order_body

INT64_OVER = 2**63
ITEMS = [("Songket", 80_000, 1, "songket")]


async def _sellers(stack: Stack) -> list[str]:
    r = await stack.client.get("/v1/sellers")
    assert r.status_code == 200, r.text
    return [s["seller_id"] for s in r.json()["items"]]


def _cursor(*position: object) -> str:
    """A cursor as a client could forge one (the service's own are base64 of the JSON position)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(list(position))).decode().rstrip("=")


# -- integers: bounded at decode ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/ledger/accounts",
        "/v1/ledger/accounts/platform:commission/statement",
        "/v1/sellers",
        "/v1/sellers/songket/statement",
        "/v1/orders",
        "/v1/payouts",
        "/v1/reconciliation/exceptions",
    ],
)
async def test_limits_out_of_range_are_refused(stack: Stack, path: str) -> None:
    await stack.create_seller("songket")
    for limit in (-1, 0, -(2**70), INT64_OVER, 501):
        r = await stack.client.get(path, params={"limit": limit})
        assert_problem(r, 422, "invalid_request")
    r = await stack.client.get(path, params={"limit": 500})
    assert r.status_code == 200, r.text


async def test_ids_and_cursors_beyond_int64_are_refused(stack: Stack) -> None:
    await stack.create_seller("songket")
    assert_problem(await stack.client.get(f"/v1/ledger/entries/{INT64_OVER}"), 422, "invalid_request")
    assert_problem(await stack.client.get("/v1/ledger/entries/-1"), 422, "invalid_request")
    r = await stack.client.post(f"/v1/reconciliation/exceptions/{INT64_OVER}/resolve", json={"resolution": "x"})
    assert_problem(r, 422, "invalid_request")
    assert_problem(await stack.client.get("/v1/ledger/entries/9223372036854775807"), 404, "entry_not_found")
    # Cursors are opaque, but a client can forge one: what is in it is bounded like any input.
    forged = [
        ("/v1/ledger/accounts/seller:songket:available/statement", _cursor(INT64_OVER)),
        ("/v1/sellers/songket/statement", _cursor(-(2**70))),
        ("/v1/ledger/accounts", _cursor("seller:\u0000")),
        ("/v1/sellers", _cursor("a\u001bb")),
        ("/v1/orders", _cursor("0001-01-01T00:00:00+01:00", "INV-1")),
        ("/v1/payouts", _cursor("9999-12-31T23:59:59-12:00", "po-1")),
        ("/v1/reconciliation/exceptions", _cursor("2026-01-01T00:00:00Z", INT64_OVER)),
    ]
    for path, cursor in forged:
        assert_problem(await stack.client.get(path, params={"cursor": cursor}), 422, "invalid_request")


# -- text: no NUL or control characters, valid UTF-8 -------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/ledger/accounts?prefix=%00",
        "/v1/ledger/accounts?after=a%00b",
        "/v1/sellers?after=%00",
        "/v1/orders?status=%00",
        "/v1/orders?seller_id=x%1B",
        "/v1/payouts?seller_id=%7F",
        "/v1/payouts?status=%C2%85",
        "/v1/sellers/so%00ket",
        "/v1/orders/INV%00",
        "/v1/ledger/accounts/seller:x%00",
        "/v1/refunds/r%01",
        "/v1/ledger/accounts?prefix=%FF",
        "/v1/sellers/%FF%FE",
        "/v1/orders?cursor=%ED%A0%80",
    ],
)
async def test_nul_control_characters_and_invalid_utf8_in_the_url_are_refused(stack: Stack, path: str) -> None:
    assert_problem(await stack.client.get(path), 422, "invalid_text")


async def test_nul_and_control_characters_in_body_text_are_refused_with_their_path(stack: Stack) -> None:
    await stack.create_seller("songket")
    cases = [
        ("/v1/sellers", {"seller_id": "ok-1", "name": "Toko\u0000"}, "$.name"),
        ("/v1/sellers", {"seller_id": "ok-2", "name": "x", "metadata": {"note": "a\u0007b"}}, "$.metadata.note"),
        ("/v1/sellers", {"seller_id": "ok-3", "name": "x", "metadata": {"k\u0000": 1}}, "$.metadata"),
        ("/v1/sellers", {"seller_id": "ok-4", "name": "x", "metadata": {"l": [1, "\u009b"]}}, "$.metadata.l[1]"),
        (
            "/v1/orders",
            {**order_body("INV-CTRL-1", ITEMS), "customer": {"name": "A\u0000", "email": "a@b.c"}},
            "$.customer.name",
        ),
        ("/v1/orders", {**order_body("INV-CTRL-2", ITEMS), "cash_tag": "$a\u001b"}, "$.cash_tag"),
    ]
    for path, payload, where in cases:
        body = assert_problem(await stack.client.post(path, json=payload), 422, "invalid_text")
        assert body["errors"][0]["path"] == where, body
    assert await _sellers(stack) == ["songket"]
    assert (await stack.client.get("/v1/orders")).json()["items"] == []
    # Tabs and line breaks are text, not control: a multi-line name is fine.
    r = await stack.client.post("/v1/sellers", json={"seller_id": "lines", "name": "Toko\tBaru\r\nJakarta"})
    assert r.status_code == 201, r.text


async def test_a_nul_in_an_invoice_number_is_refused(stack: Stack) -> None:
    await stack.create_seller("songket")
    r = await stack.client.post("/v1/orders", json=order_body("INV-\u0000-1", ITEMS))
    assert_problem(r, 422, "invalid_invoice_number")
    assert stack.sandbox.orders() == ()


async def test_invalid_utf8_in_a_json_body_is_malformed_json(stack: Stack) -> None:
    for raw in (b'{"seller_id": "x", "name": "\xff"}', b'{"seller_id": "x", "name": "\xed\xa0\x80"}', b"\xc0\x80"):
        r = await stack.client.post("/v1/sellers", content=raw, headers={"Content-Type": "application/json"})
        assert_problem(r, 400, "malformed_json")
    assert await _sellers(stack) == []


async def test_settlement_csv_with_invalid_utf8_or_nul_is_refused(stack: Stack) -> None:
    for raw in (b"invoice_number,amount\nINV-\xff,5\n", b"invoice_number,amount\nINV-\x00,5\n"):
        r = await stack.client.post("/v1/settlements", content=raw, headers={"Content-Type": "text/csv"})
        assert 400 <= r.status_code < 500, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await stack.client.post("/v1/settlements", json={"csv": "invoice_number,amount\nINV-\u0000,5\n"})
    assert_problem(r, 422, "invalid_text")


async def test_settlement_lines_with_control_characters_or_dates_out_of_range_become_exceptions(stack: Stack) -> None:
    header = "invoice_number,gross_amount,fee,net_amount,settlement_date\n"
    for line in (
        "INV-\x01,100000,1000,99000,2026-12-03\n",
        "INV-X,100000,1000,99000,0001-01-01T00:00:00+01:00\n",
        "INV-Y,100000,1000,99000,9999-12-31\n",
    ):
        r = await stack.client.post(
            "/v1/settlements", content=(header + line).encode(), headers={"Content-Type": "text/csv"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["exceptions"] == {"invalid_line": 1}, r.text
    kinds = {e["kind"] for e in await stack.exceptions()}
    assert kinds == {"invalid_line"}


# -- nesting -----------------------------------------------------------------------------------


async def test_a_100000_deep_json_array_is_refused(stack: Stack) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/v1/sellers", "/v1/orders", "/v1/settlements", "/v1/payouts/po-x/confirm"):
        r = await stack.client.post(path, content=deep, headers={"Content-Type": "application/json"})
        assert_problem(r, 400, "nesting_too_deep")


async def test_metadata_nested_2000_deep_is_refused(stack: Stack) -> None:
    # Written out by hand: Python's own encoder gives up at this depth.
    deep = b'{"seller_id": "deep", "name": "Deep", "metadata": ' + b'{"n": ' * 2_000 + b'"bottom"' + b"}" * 2_001
    r = await stack.client.post("/v1/sellers", content=deep, headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "nesting_too_deep")
    assert await _sellers(stack) == []
    nested: object = "bottom"
    for _ in range(20):  # deep enough for anyone's metadata
        nested = {"n": nested}
    r = await stack.client.post("/v1/sellers", json={"seller_id": "ok", "name": "Ok", "metadata": nested})
    assert r.status_code == 201, r.text


# -- dates in range ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/reconciliation", {"period_end": "0001-01-01"}),
        ("/v1/reconciliation", {"period_start": "0001-01-01"}),
        ("/v1/reconciliation", {"period_end": "9999-12-31"}),
        ("/v1/sellers/songket/balances", {"as_of": "0001-01-01T00:00:00+01:00"}),
        ("/v1/sellers/songket/statement", {"since": "9999-12-31T23:59:59-05:00"}),
        ("/v1/ledger/accounts/platform:commission/balance", {"as_of": "0001-01-01T00:00:00Z"}),
        ("/v1/orders", {"created_from": "9999-12-31T23:59:59-12:00"}),
        ("/v1/orders", {"created_to": "0001-01-01T00:00:00+14:00"}),
    ],
)
async def test_dates_out_of_range_are_refused(stack: Stack, path: str, params: dict[str, str]) -> None:
    await stack.create_seller("songket")
    assert_problem(await stack.client.get(path, params=params), 422, "invalid_request")


async def test_dates_in_range_are_answered(stack: Stack) -> None:
    await stack.create_seller("songket")
    r = await stack.client.get("/v1/reconciliation", params={"period_start": "1970-01-01", "period_end": "2999-12-31"})
    assert r.status_code == 200, r.text
    r = await stack.client.get("/v1/sellers/songket/balances", params={"as_of": "1970-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text


# -- Content-Type ------------------------------------------------------------------------------


async def test_a_json_body_sent_as_another_media_type_is_415(stack: Stack) -> None:
    await stack.create_seller("songket")
    seller = msgspec.json.encode({"seller_id": "plain", "name": "Plain"})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml", None):
        headers = {"Content-Type": content_type} if content_type else {}
        r = await stack.client.post("/v1/sellers", content=seller, headers=headers)
        assert_problem(r, 415, "unsupported_media_type")
        r = await stack.client.put(
            "/v1/platform/gateway", content=b'{"client_id":"x","secret_key":"y"}', headers=headers
        )
        assert_problem(r, 415, "unsupported_media_type")
        r = await stack.client.post("/v1/payouts/po-x/confirm", content=b"{}", headers=headers)
        assert_problem(r, 415, "unsupported_media_type")
    r = await stack.client.post("/v1/settlements", content=b"a,b\n", headers={"Content-Type": "text/plain"})
    assert_problem(r, 415, "unsupported_media_type")
    assert await _sellers(stack) == ["songket"]
    r = await stack.client.post(
        "/v1/sellers", content=seller, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert r.status_code == 201, r.text


# -- unknown fields ----------------------------------------------------------------------------


async def test_a_misspelled_field_is_unknown_field_with_its_path(stack: Stack) -> None:
    r = await stack.client.post("/v1/sellers", json={"seller_id": "typo", "name": "Typo", "comission_bps": 300})
    body = assert_problem(r, 422, "unknown_field")
    assert body["errors"] == [
        {"code": "unknown_field", "path": "$.comission_bps", "detail": body["errors"][0]["detail"]}
    ]
    assert await _sellers(stack) == []
    await stack.create_seller("songket")
    r = await stack.client.post(
        "/v1/orders",
        json={**order_body("INV-TYPO-1", ITEMS), "customer": {"name": "A", "email": "a@b.c", "phon": "0812"}},
    )
    body = assert_problem(r, 422, "unknown_field")
    assert body["errors"][0]["path"] == "$.customer.phon"
    r = await stack.client.post(
        "/v1/orders", json={**order_body("INV-TYPO-2", ITEMS), "split": {"type": "cart", "comission_bps": 1}}
    )
    assert assert_problem(r, 422, "unknown_field")["errors"][0]["path"] == "$.split.comission_bps"
    r = await stack.client.put(
        "/v1/platform/gateway", json={"client_id": CLIENT_ID, "secret_key": "SK-x", "fee_bsp": 1}
    )
    assert assert_problem(r, 422, "unknown_field")["errors"][0]["path"] == "$.fee_bsp"
    assert stack.sandbox.orders() == ()


async def test_a_wrong_type_names_the_field(stack: Stack) -> None:
    r = await stack.client.post("/v1/sellers", json={"seller_id": "x", "name": "X", "commission_bps": "300"})
    body = assert_problem(r, 422, "invalid_request")
    assert body["errors"][0]["path"] == "$.commission_bps"


async def test_unknown_field_is_documented(stack: Stack) -> None:
    document = (await stack.anon.get("/docs/openapi.json")).json()
    assert "unknown_field" in document["info"]["description"]


# -- DOKU's notifications: correctly signed, still hostile -------------------------------------


async def test_a_correctly_signed_100000_deep_notification_is_malformed(stack: Stack) -> None:
    r = await stack.notify(b"[" * 100_000 + b"]" * 100_000)
    assert_problem(r, 400, "malformed_message")
    r = await stack.notify(b'{"order": ' * 5_000 + b"1" + b"}" * 5_000)
    assert_problem(r, 400, "malformed_message")
    kept = await stack.inbox()
    assert [row["outcome"] for row in kept] == ["malformed_message", "malformed_message"]


async def test_a_correctly_signed_notification_with_bad_text_is_malformed(stack: Stack) -> None:
    await stack.create_seller("songket")
    await stack.place_order("INV-NTF-1", ITEMS)
    for body in (
        notification_body("INV-NTF-1\u0000", 80_000),
        notification_body("INV-NTF-1", 80_000).replace(b'"SUCCESS"', b'"SUCC\\u0000ESS"'),
        notification_body("INV-NTF-1", 80_000).replace(b"INV-NTF-1", b"INV-NTF-\xff"),
    ):
        r = await stack.notify(body)
        assert_problem(r, 400, "malformed_message")
    assert (await stack.order("INV-NTF-1"))["status"] == "pending"
    # DOKU may add fields: unknown ones are still ignored.
    extra = msgspec.json.decode(notification_body("INV-NTF-1", 80_000))
    extra["novel"] = {"from": "doku"}
    r = await stack.notify(msgspec.json.encode(extra))
    assert r.status_code == 200, r.text
    assert (await stack.order("INV-NTF-1"))["status"] == "captured"
