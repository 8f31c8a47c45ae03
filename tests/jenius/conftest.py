"""Fixtures for the Jenius adapter: a real loopback DOKU sandbox, a merchant inbox, a client.

Two real loopback HTTP servers live for the whole session: the merchant inbox (reset per test) and a
DOKU server that forwards to a fresh :class:`Sandbox` per test, so no state leaks between tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from litestar import Litestar, Request, Response, post
from litestar.types import ASGIApp, Receive, Scope, Send

from jenius.client import JeniusClient, JeniusConfig
from jenius.messages import Customer, LineItem, PaymentRequest, build_payment_request
from jenius.sandbox import Sandbox, SandboxMerchant, serve_app

CLIENT_ID = "MCH-0001-10791114622547"
SECRET_KEY = "SK-test-secret-123"
NOTIFY_PATH = "/hooks/doku/notify"
FAST_RETRIES = (0.05, 0.1, 0.2)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Inbox:
    """A merchant's notification endpoint: records every delivery and answers from ``script``
    (HTTP statuses used in order, then 200)."""

    url: str = ""
    queue: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    script: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self.queue = asyncio.Queue()
        self.script = []

    async def next(self, timeout_s: float = 3.0) -> Received:
        return await asyncio.wait_for(self.queue.get(), timeout_s)

    async def nothing_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.queue.get(), seconds)
        except TimeoutError:
            return True
        return False


def inbox_app(inbox: Inbox) -> Litestar:
    async def receive(request: Request) -> Response[bytes]:
        await inbox.queue.put(Received(request.url.path, dict(request.headers), await request.body()))
        status = inbox.script.pop(0) if inbox.script else 200
        return Response(content=b"", status_code=status)

    return Litestar([post(NOTIFY_PATH)(receive)], openapi_config=None, logging_config=None)


@pytest.fixture(scope="session")
async def inbox_server() -> AsyncIterator[Inbox]:
    inbox = Inbox()
    async with serve_app(inbox_app(inbox)) as base_url:
        inbox.url = base_url + NOTIFY_PATH
        yield inbox


@pytest.fixture
def inbox(inbox_server: Inbox) -> Inbox:
    inbox_server.reset()
    return inbox_server


@pytest.fixture
def sandbox(inbox: Inbox) -> Sandbox:
    return Sandbox(
        merchants=[SandboxMerchant(client_id=CLIENT_ID, secret_key=SECRET_KEY, notification_url=inbox.url)],
        retry_schedule_s=FAST_RETRIES,
    )


class Switchboard:
    """An ASGI app that forwards to the current test's sandbox, so one uvicorn serves the session
    (a uvicorn start/stop costs ~0.2 s). Tests of ``serve_sandbox`` itself start their own."""

    def __init__(self) -> None:
        self.target: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        assert self.target is not None, "no sandbox is plugged in"
        await self.target(scope, receive, send)


@pytest.fixture(scope="session")
async def doku_server() -> AsyncIterator[tuple[Switchboard, str]]:
    board = Switchboard()
    async with serve_app(board) as base_url:
        yield board, base_url


@pytest.fixture
async def doku_url(sandbox: Sandbox, doku_server: tuple[Switchboard, str]) -> AsyncIterator[str]:
    board, base_url = doku_server
    board.target = sandbox.app
    yield base_url
    await sandbox.aclose()  # wakes answers hung by a timeout fault, cancels deliveries
    board.target = None


class RecordingTransport(httpx.AsyncBaseTransport):
    """Real loopback HTTP, with every request the client sends kept for inspection."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def client_config(base_url: str, **overrides: object) -> JeniusConfig:
    settings: dict[str, object] = {
        "client_id": CLIENT_ID,
        "secret_key": SECRET_KEY,
        "base_url": base_url,
        "timeout_s": 2.0,
        "connect_timeout_s": 1.0,
        "max_attempts": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    settings.update(overrides)
    return JeniusConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
async def doku(doku_url: str, transport: RecordingTransport) -> AsyncIterator[JeniusClient]:
    async with JeniusClient(client_config(doku_url), transport=transport) as client:
        yield client


def payment(invoice_number: str = "INV-0001", amount: int = 50_000, **overrides: object) -> PaymentRequest:
    """A valid payment request; ``overrides`` replace build_payment_request arguments."""
    arguments: dict[str, object] = {
        "invoice_number": invoice_number,
        "amount": amount,
        "line_items": (
            LineItem(name="Ayam", price=amount - 10_000, quantity=1),
            LineItem(name="Roti", price=10_000, quantity=1),
        ),
        "customer": Customer(name="Astari", email="Astari@doku.com", phone="081288910205"),
        "redirect_url": "https://shop.example/return",
        "cash_tag": "$admin",
    }
    arguments.update(overrides)
    return build_payment_request(**arguments)  # type: ignore[arg-type]
