"""The whole stack on real loopback HTTP: the service (uvicorn) on a fresh database, the DOKU
sandbox, a platform with DOKU credentials, and an authenticated client.

Helpers for the end-to-end tests: place and capture orders through the sandbox, hand-sign a DOKU
notification, open a second platform (own API key, own DOKU merchant) on the same service, poll
instead of sleeping, and read the notification inbox straight from the database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from api.app import create_app
from api.database import create_pool
from api.serving import serve_app
from api.settings import load_settings
from jenius import signing
from jenius.sandbox import Sandbox, SandboxMerchant, serve_sandbox
from ledger.service.faults import Faults
from ledger.service.platforms import create_platform
from ledger.store import Database

CLIENT_ID = "MCH-0001-10791114622547"
SECRET_KEY = "SK-test-secret-123"
FEE_BPS = 150  # DOKU's MDR in the sandbox and in the platform's settings: 1.5 %
FEE_FIXED = 1000
COMMISSION_BPS = 500
NOTIFICATION_PATH = "/v1/doku/notifications"
WIB = timezone(timedelta(hours=7), "WIB")
PROBLEM_JSON = "application/problem+json"
METRICS_TOKEN = "metrics-test-token"
SECRETS_KEY = os.environ["SPLITLEDGER_SECRETS_KEY"]  # set for the whole suite in tests/conftest.py


@dataclass
class Stack:
    base_url: str
    sandbox_url: str
    sandbox: Sandbox
    client: httpx.AsyncClient  # authenticated as the platform
    anon: httpx.AsyncClient
    platform_id: str
    api_key: str
    database_url: str
    _extra_clients: list[httpx.AsyncClient]

    async def create_seller(self, seller_id: str, **extra: object) -> dict:
        r = await self.client.post("/v1/sellers", json={"seller_id": seller_id, "name": f"Toko {seller_id}", **extra})
        assert r.status_code == 201, r.text
        return r.json()

    async def balances(self, seller_id: str) -> dict:
        r = await self.client.get(f"/v1/sellers/{seller_id}/balances")
        assert r.status_code == 200, r.text
        return r.json()

    async def trial_balance(self) -> dict:
        r = await self.client.get("/v1/ledger/trial-balance")
        assert r.status_code == 200, r.text
        return r.json()

    async def assert_books_balance(self) -> dict[str, int]:
        """The trial balance is zero; returns every account's balance by code."""
        tb = await self.trial_balance()
        assert tb["totals"] == {"IDR": 0}, tb
        return {line["account"]: line["balance"] for line in tb["lines"]}

    async def accounts(self) -> dict[str, int]:
        return {line["account"]: line["balance"] for line in (await self.trial_balance())["lines"]}

    async def order(self, invoice: str) -> dict:
        r = await self.client.get(f"/v1/orders/{invoice}")
        assert r.status_code == 200, r.text
        return r.json()

    async def place_order(self, invoice: str, items: list[tuple[str, int, int, str]], **extra: object) -> dict:
        r = await self.client.post("/v1/orders", json=order_body(invoice, items, **extra))
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "pending", r.json()
        return r.json()

    async def wait_for_status(self, invoice: str, status: str, timeout_s: float = 5.0) -> dict:
        async def reached() -> dict | None:
            order = await self.order(invoice)
            return order if order["status"] == status else None

        return await poll(reached, timeout_s, f"order {invoice} never became {status}")

    async def capture(self, invoice: str, items: list[tuple[str, int, int, str]], **extra: object) -> dict:
        """Place an order, approve it in the sandbox and wait for the notification's capture."""
        await self.place_order(invoice, items, **extra)
        await self.sandbox.approve(invoice, client_id=CLIENT_ID)
        await self.sandbox.drain()
        return await self.wait_for_status(invoice, "captured")

    async def sandbox_post(self, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.sandbox_url, timeout=10, trust_env=False) as c:
            return await c.post(path, **kwargs)

    async def sandbox_get(self, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.sandbox_url, timeout=10, trust_env=False) as c:
            return await c.get(path, **kwargs)

    async def settlement_csv(self, invoice: str) -> str:
        """DOKU's settlement report (over the sandbox's HTTP control API) for the day the order was captured."""
        captured_at = self.sandbox.order(invoice, client_id=CLIENT_ID).captured_at
        assert captured_at is not None
        day = captured_at.astimezone(WIB).date()
        r = await self.sandbox_get(f"/_sandbox/settlements/{day.isoformat()}.csv", params={"client_id": CLIENT_ID})
        assert r.status_code == 200, r.text
        return r.text

    async def import_settlement(self, csv_text: str) -> dict:
        r = await self.client.post("/v1/settlements", content=csv_text.encode(), headers={"Content-Type": "text/csv"})
        assert r.status_code == 201, r.text
        return r.json()

    async def notify(
        self,
        body: bytes,
        *,
        client_id: str = CLIENT_ID,
        secret_key: str = SECRET_KEY,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST a notification to the service, signed like DOKU signs it (or as ``headers`` say)."""
        signed = notification_headers(body, client_id=client_id, secret_key=secret_key, request_id=request_id)
        return await self.anon.post(NOTIFICATION_PATH, content=body, headers={**signed, **(headers or {})})

    async def inbox(self, invoice: str | None = None) -> list[dict]:
        """Every notification the service kept for this platform, oldest first."""
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch(
                "SELECT * FROM notifications WHERE platform_id = $1 AND ($2::text IS NULL OR invoice_number = $2) "
                "ORDER BY notification_id",
                self.platform_id,
                invoice,
            )
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    async def exceptions(self, client: httpx.AsyncClient | None = None) -> list[dict]:
        r = await (client or self.client).get("/v1/reconciliation/exceptions")
        assert r.status_code == 200, r.text
        return r.json()["items"]

    async def new_platform(self, name: str, *, client_id: str | None = None) -> Platform:
        """Another platform on the same service; with ``client_id`` it is also a DOKU merchant in the sandbox."""
        platform_id, api_key = await platform_at(self.database_url, name)
        client = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30,
            trust_env=False,
            event_hooks=KEYED_HOOKS,
        )
        self._extra_clients.append(client)
        secret = f"SK-{secrets.token_hex(8)}"
        if client_id is not None:
            self.sandbox.add_merchant(
                SandboxMerchant(
                    client_id=client_id, secret_key=secret, notification_url=self.base_url + NOTIFICATION_PATH
                )
            )
            r = await client.put(
                "/v1/platform/gateway",
                json={
                    "client_id": client_id,
                    "secret_key": secret,
                    "fee_bps": FEE_BPS,
                    "fee_fixed": FEE_FIXED,
                    "fee_bearer": "platform",
                    "commission_bps": COMMISSION_BPS,
                },
            )
            assert r.status_code == 200, r.text
        return Platform(platform_id=platform_id, api_key=api_key, client=client, client_id=client_id, secret_key=secret)


@dataclass
class Platform:
    platform_id: str
    api_key: str
    client: httpx.AsyncClient
    client_id: str | None
    secret_key: str


async def poll(check: Callable[[], Awaitable[Any]], timeout_s: float, message: str) -> Any:
    """Call ``check`` every few milliseconds until it returns something truthy; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.01)


def notification_body(
    invoice: str,
    amount: int,
    status: str = "SUCCESS",
    *,
    original_request_id: str | None = None,
    at: datetime | None = None,
) -> bytes:
    """A DOKU HTTP notification body (amount a JSON number, as DOKU sends it)."""
    transaction: dict[str, Any] = {"status": status, "date": signing.format_timestamp(at or datetime.now(UTC))}
    if original_request_id:
        transaction["original_request_id"] = original_request_id
    return msgspec.json.encode(
        {
            "service": {"id": "INTERNET_BANKING"},
            "acquirer": {"id": "BTPN"},
            "channel": {"id": "JENIUS"},
            "order": {"invoice_number": invoice, "amount": amount},
            "transaction": transaction,
        }
    )


async def platform_at(database_url: str, name: str) -> tuple[str, str]:
    """A new platform in the service's database: ``(platform_id, api_key)``."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        return await create_platform(Database(pool), name)
    finally:
        await pool.close()


async def _add_idempotency_key(request: httpx.Request) -> None:
    """Money-moving POSTs require an Idempotency-Key; tests that do not care about it get a fresh one.

    Tests of idempotency itself send their own key (kept as given); a test of the requirement
    sends ``Idempotency-Key: -`` to mean "none" (the header is then removed).
    """
    if request.method != "POST":
        return
    given = request.headers.get("idempotency-key")
    if given == "-":
        del request.headers["idempotency-key"]
    elif given is None and ("/refunds" in request.url.path or "/payouts" in request.url.path):
        request.headers["idempotency-key"] = f"test-{secrets.token_hex(8)}"


KEYED_HOOKS: dict[str, list[Any]] = {"request": [_add_idempotency_key]}


def notification_headers(
    body: bytes, *, client_id: str = CLIENT_ID, secret_key: str = SECRET_KEY, request_id: str | None = None
) -> dict[str, str]:
    request_id = request_id or f"ntf-{secrets.token_hex(8)}"
    timestamp = signing.format_timestamp(datetime.now(UTC))
    return {
        "Content-Type": "application/json",
        "Client-Id": client_id,
        "Request-Id": request_id,
        "Request-Timestamp": timestamp,
        "Signature": signing.sign(
            secret_key=secret_key,
            client_id=client_id,
            request_id=request_id,
            timestamp=timestamp,
            target=NOTIFICATION_PATH,
            body=body,
        ),
    }


def assert_problem(r: httpx.Response, status: int, code: str) -> dict:
    """An RFC 9457 answer with this status and stable ``code``; returns the body."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers.get("content-type")
    body = r.json()
    assert body["code"] == code, body
    assert body["status"] == status, body
    assert len(r.headers.get_list("x-request-id")) == 1, "every answer carries one X-Request-Id"
    if r.headers.get("idempotent-replayed") != "true":  # a replay is the first answer, byte for byte
        assert body["request_id"] == r.headers["x-request-id"]
    return body


def order_body(invoice: str, items: list[tuple[str, int, int, str]], **extra: object) -> dict:
    return {
        "invoice_number": invoice,
        "amount": sum(price * qty for _, price, qty, _ in items),
        "line_items": [{"name": n, "price": p, "quantity": q, "seller_id": s} for n, p, q, s in items],
        "customer": {"name": "Astari", "email": "astari@example.com", "phone": "081288910205"},
        "redirect_url": "https://shop.example/return",
        "cash_tag": "$astari",
        **extra,
    }


async def start_stack(
    database_url: str,
    *,
    platform_name: str = "Toko Maju",
    faults: Faults | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **overrides: object,
) -> AsyncIterator[Stack]:
    """The stack; ``overrides`` change the service's settings (e.g. ``doku_timeout_s``); ``faults`` and
    ``transport`` are handed to ``create_app`` (fault injection, and what the service sends DOKU)."""
    sandbox = Sandbox(fee_bps=FEE_BPS, fee_fixed=FEE_FIXED, retry_schedule_s=(0.05, 0.1, 0.2))
    async with serve_sandbox(sandbox) as sandbox_url:
        settings = load_settings(
            {},
            database_url=database_url,
            status_check_enabled=False,
            **{
                "pool_min": 1,
                "pool_max": 6,
                "doku_base_url": sandbox_url,
                "doku_allow_loopback_http": True,  # the sandbox is plain http on loopback
                "secrets_key": SECRETS_KEY,
                "metrics_token": METRICS_TOKEN,
                **overrides,
            },
        )
        app = create_app(settings, transport=transport, faults=faults)
        async with serve_app(app) as base_url:
            assert settings.notification_path == NOTIFICATION_PATH
            sandbox.add_merchant(
                SandboxMerchant(
                    client_id=CLIENT_ID, secret_key=SECRET_KEY, notification_url=base_url + settings.notification_path
                )
            )
            platform_id, api_key = await platform_at(database_url, platform_name)
            async with (
                httpx.AsyncClient(
                    base_url=base_url,
                    headers={"Authorization": f"Bearer {api_key}"},
                    timeout=30,
                    trust_env=False,
                    event_hooks=KEYED_HOOKS,
                ) as client,
                httpx.AsyncClient(base_url=base_url, timeout=30, trust_env=False) as anon,
            ):
                r = await client.put(
                    "/v1/platform/gateway",
                    json={
                        "client_id": CLIENT_ID,
                        "secret_key": SECRET_KEY,
                        "fee_bps": FEE_BPS,
                        "fee_fixed": FEE_FIXED,
                        "fee_bearer": "platform",
                        "commission_bps": COMMISSION_BPS,
                    },
                )
                assert r.status_code == 200, r.text
                stack = Stack(
                    base_url=base_url,
                    sandbox_url=sandbox_url,
                    sandbox=sandbox,
                    client=client,
                    anon=anon,
                    platform_id=platform_id,
                    api_key=api_key,
                    database_url=database_url,
                    _extra_clients=[],
                )
                try:
                    yield stack
                finally:
                    for extra in stack._extra_clients:
                        await extra.aclose()


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    async for s in start_stack(database_url):
        yield s
