"""The whole stack on real loopback HTTP: the service (uvicorn) on a fresh database, the DOKU
sandbox, a platform with DOKU credentials, and an authenticated client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from api.app import create_app
from api.platforms import create_platform
from api.serving import serve_app
from api.settings import load_settings
from jenius.sandbox import Sandbox, SandboxMerchant, serve_sandbox

CLIENT_ID = "MCH-0001-10791114622547"
SECRET_KEY = "SK-test-secret-123"
FEE_BPS = 150  # DOKU's MDR in the sandbox and in the platform's settings: 1.5 %
FEE_FIXED = 1000


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


async def start_stack(database_url: str, *, platform_name: str = "Toko Maju") -> AsyncIterator[Stack]:
    sandbox = Sandbox(fee_bps=FEE_BPS, fee_fixed=FEE_FIXED, retry_schedule_s=(0.05, 0.1, 0.2))
    async with serve_sandbox(sandbox) as sandbox_url:
        settings = load_settings(
            {},
            database_url=database_url,
            doku_base_url=sandbox_url,
            status_check_enabled=False,
            pool_min=1,
            pool_max=6,
        )
        app = create_app(settings)
        async with serve_app(app) as base_url:
            sandbox.add_merchant(
                SandboxMerchant(client_id=CLIENT_ID, secret_key=SECRET_KEY,
                                notification_url=base_url + settings.notification_path)
            )
            conn = await asyncpg.connect(database_url)
            try:
                platform_id, api_key = await create_platform(conn, platform_name)
            finally:
                await conn.close()
            async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"},
                                         timeout=30) as client, httpx.AsyncClient(base_url=base_url, timeout=30) as anon:
                r = await client.put("/v1/platform/gateway", json={
                    "client_id": CLIENT_ID, "secret_key": SECRET_KEY, "fee_bps": FEE_BPS, "fee_fixed": FEE_FIXED,
                    "fee_bearer": "platform", "commission_bps": 500,
                })
                assert r.status_code == 200, r.text
                yield Stack(base_url=base_url, sandbox_url=sandbox_url, sandbox=sandbox, client=client, anon=anon,
                            platform_id=platform_id, api_key=api_key, database_url=database_url)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    async for s in start_stack(database_url):
        yield s
