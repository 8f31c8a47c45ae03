"""Nothing reachable that should not be: the DOKU Secret Key is never answered nor logged, /metrics
needs its token, a platform cannot point the service's signed requests at an arbitrary host, and
each API key and each DOKU Client-Id has a request rate limit (429 problem+json with Retry-After)."""

from __future__ import annotations

import logging

import pytest

from api.app import create_app
from api.settings import load_settings
from tests.api.conftest import (
    CLIENT_ID,
    METRICS_TOKEN,
    SECRET_KEY,
    Stack,
    assert_problem,
    notification_body,
    start_stack,
)

ITEMS = [("Songket", 80_000, 1, "songket")]


async def test_the_secret_key_is_never_answered_nor_logged(stack: Stack, caplog, capfd) -> None:
    caplog.set_level(logging.DEBUG)
    r = await stack.client.put(
        "/v1/platform/gateway",
        json={"client_id": CLIENT_ID, "secret_key": SECRET_KEY, "fee_bps": 150, "fee_fixed": 1000, "commission_bps": 5},
    )
    assert r.status_code == 200 and "secret_key" not in r.json()
    answers = [r, await stack.client.get("/v1/platform/gateway")]
    await stack.create_seller("songket")
    await stack.capture("INV-SEC-1", ITEMS)  # signs a payment request, verifies a notification
    answers.append(await stack.client.post("/v1/orders/INV-SEC-1/refunds", json={"amount": 1_000, "reason": "x"}))
    answers.append(await stack.client.put("/v1/platform/gateway", json={"client_id": CLIENT_ID, "secret_key": 7}))
    answers.append(
        await stack.client.put("/v1/platform/gateway", json={"client_id": CLIENT_ID, "secret_key": "x" * 257})
    )
    answers.append(await stack.anon.get("/docs/openapi.json"))
    for answer in answers:
        assert SECRET_KEY not in answer.text, answer.request.url
    logged = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    out, err = capfd.readouterr()
    assert logged and SECRET_KEY not in logged
    assert SECRET_KEY not in out + err


async def test_metrics_answer_only_the_metrics_token(stack: Stack) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {METRICS_TOKEN}"}):
        assert_problem(await stack.anon.get("/metrics", headers=headers), 401, "unauthorized")
    assert_problem(await stack.client.get("/metrics"), 401, "unauthorized")  # an API key is not the token
    r = await stack.anon.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and "splitledger_http_requests_total" in r.text


async def test_without_a_metrics_token_configured_metrics_are_closed(database_url: str) -> None:
    async for stack in start_stack(database_url, metrics_token=""):
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Bearer {METRICS_TOKEN}"}):
            assert_problem(await stack.anon.get("/metrics", headers=headers), 401, "unauthorized")


@pytest.mark.parametrize(
    ("base_url", "code"),
    [
        ("http://api.doku.com", "invalid_base_url"),
        ("http://10.0.0.7:8080", "invalid_base_url"),
        ("ftp://api.doku.com", "invalid_base_url"),
        ("https://user:pass@api.doku.com", "invalid_base_url"),
        ("https://api.doku.com?x=1", "invalid_base_url"),
        ("not a url", "invalid_base_url"),
        ("https://", "invalid_base_url"),
    ],
)
async def test_a_gateway_base_url_must_be_https(stack: Stack, base_url: str, code: str) -> None:
    before = (await stack.client.get("/v1/platform/gateway")).json()
    r = await stack.client.put(
        "/v1/platform/gateway", json={"client_id": CLIENT_ID, "secret_key": SECRET_KEY, "base_url": base_url}
    )
    assert_problem(r, 422, code)
    assert (await stack.client.get("/v1/platform/gateway")).json() == before


async def test_a_refund_path_cannot_leave_dokus_host(stack: Stack) -> None:
    for path in ("//evil.example/refund", "refund", "/refund?to=evil", "/a b"):
        r = await stack.client.put(
            "/v1/platform/gateway", json={"client_id": CLIENT_ID, "secret_key": SECRET_KEY, "refund_path": path}
        )
        assert_problem(r, 422, "invalid_refund_path")


async def test_https_is_accepted_and_loopback_http_only_in_sandbox_mode(stack: Stack, database_url: str) -> None:
    body = {"client_id": CLIENT_ID, "secret_key": SECRET_KEY}
    r = await stack.client.put("/v1/platform/gateway", json={**body, "base_url": "https://api.doku.com"})
    assert r.status_code == 200 and r.json()["base_url"] == "https://api.doku.com"
    r = await stack.client.put("/v1/platform/gateway", json={**body, "base_url": stack.sandbox_url})
    assert r.status_code == 200  # this stack allows its loopback sandbox
    strict = load_settings({}, database_url=database_url, doku_base_url="https://api-sandbox.doku.com")
    assert strict.doku_allow_loopback_http is False  # the default: production
    app = create_app(strict)
    assert app is not None
    with pytest.raises(ValueError, match="ALLOW_LOOPBACK_HTTP"):
        create_app(load_settings({}, database_url=database_url, doku_base_url="http://127.0.0.1:8070"))
    with pytest.raises(ValueError, match="https"):
        create_app(load_settings({}, doku_base_url="http://api-sandbox.doku.com", doku_allow_loopback_http=True))
    with pytest.raises(ValueError, match="REFUND_PATH"):
        create_app(load_settings({}, doku_refund_path="//evil.example/refund"))


async def test_loopback_http_is_refused_without_sandbox_mode(database_url: str) -> None:
    strict = {"doku_allow_loopback_http": False, "doku_base_url": "https://api-sandbox.doku.com"}
    async for stack in start_stack(database_url, doku_probe_interval_s=0, **strict):  # nothing is sent to DOKU
        body = {"client_id": CLIENT_ID, "secret_key": SECRET_KEY}
        for url in (stack.sandbox_url, "http://localhost:8070", "http://[::1]:8070"):
            r = await stack.client.put("/v1/platform/gateway", json={**body, "base_url": url})
            assert_problem(r, 422, "invalid_base_url")
        r = await stack.client.put("/v1/platform/gateway", json={**body, "base_url": "https://api.doku.com"})
        assert r.status_code == 200, r.text


# -- rate limits -------------------------------------------------------------------------------


async def test_each_api_key_has_a_rate_limit(database_url: str) -> None:
    async for stack in start_stack(database_url, rate_limit_api_key_per_s=0.5, rate_limit_api_key_burst=5):
        other = await stack.new_platform("Toko Lain")
        answers = [await stack.client.get("/v1/sellers") for _ in range(7)]
        assert [r.status_code for r in answers[:4]] == [200] * 4  # the gateway PUT took the fifth token
        body = assert_problem(answers[5], 429, "rate_limited")
        assert int(answers[5].headers["retry-after"]) >= 1
        assert body["extra"]["retry_after_s"] == int(answers[5].headers["retry-after"])
        # POSTs too, with any body (refused before it is read), and another key is not affected.
        r = await stack.client.post("/v1/sellers", content=b"[" * 50_000, headers={"Content-Type": "text/plain"})
        assert_problem(r, 429, "rate_limited")
        assert (await other.client.get("/v1/sellers")).status_code == 200
        assert (await stack.anon.get("/health")).status_code == 200  # operations are not limited


async def test_each_doku_client_id_has_a_rate_limit_on_notifications(database_url: str) -> None:
    async for stack in start_stack(database_url, rate_limit_notification_per_s=0.5, rate_limit_notification_burst=3):
        await stack.create_seller("songket")
        await stack.place_order("INV-RL-1", ITEMS)
        body = notification_body("INV-RL-1", 80_000)
        answers = [await stack.notify(body) for _ in range(5)]
        assert [r.status_code for r in answers[:3]] == [200, 200, 200]
        limited = assert_problem(answers[3], 429, "rate_limited")
        assert limited["code"] == "rate_limited" and int(answers[3].headers["retry-after"]) >= 1
        r = await stack.notify(body, client_id="MCH-SOMEONE-ELSE", secret_key="SK-x")
        assert_problem(r, 401, "unknown_client_id")  # its own bucket
        assert (await stack.order("INV-RL-1"))["status"] == "captured"


async def test_rate_limits_can_be_switched_off(database_url: str) -> None:
    async for stack in start_stack(
        database_url, rate_limit_enabled=False, rate_limit_api_key_per_s=0.5, rate_limit_api_key_burst=1
    ):
        assert {(await stack.client.get("/v1/sellers")).status_code for _ in range(10)} == {200}
