"""Notifications over real HTTP, as a flash sale sends them: answered only once their batch has
committed (with the database gone, 503 and nothing kept, so DOKU delivers again), and a second
worker on the same database sees a DOKU secret changed through the first at once.

The outage is the network's: the service reaches its (real) PostgreSQL through a TCP proxy the
test can cut, so connections break and new ones are refused, as when the database host goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from api.app import create_app
from api.serving import serve_app
from api.settings import load_settings
from tests.api.conftest import (
    CLIENT_ID,
    NOTIFICATION_PATH,
    SECRETS_KEY,
    Stack,
    assert_problem,
    notification_body,
    notification_headers,
    start_stack,
)

ITEMS = [("Tenun ikat", 60_000, 1, "tenun")]
AMOUNT = 60_000


class CuttableLink:
    """A TCP proxy in front of the database: ``cut()`` resets every connection and refuses new ones."""

    def __init__(self, database_url: str) -> None:
        self.target = urlsplit(database_url)
        self.up = True
        self._pipes: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def url(self) -> str:
        query = "&".join(f"{k}={v[0]}" for k, v in parse_qs(self.target.query).items() if k != "host")
        netloc = f"{self.target.username or 'postgres'}@127.0.0.1:{self.port}"
        return urlunsplit((self.target.scheme, netloc, self.target.path, query, ""))

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        socket_dir = parse_qs(self.target.query).get("host", [None])[0]
        if socket_dir:
            return await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{self.target.port or 5432}")
        return await asyncio.open_connection(self.target.hostname, self.target.port or 5432)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        up_reader, up_writer = await self._open_target()
        self._pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._pipes -= {writer, up_writer}

    async def __aenter__(self) -> CuttableLink:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self.cut()
        self._server.close()

    def cut(self) -> None:
        self.up = False
        for pipe in list(self._pipes):
            pipe.transport.abort()
        self._pipes.clear()


@contextlib.asynccontextmanager
async def stack_behind(link: CuttableLink) -> AsyncIterator[Stack]:
    async for stack in start_stack(link.url(), db_acquire_timeout_s=1.0):
        yield stack


async def test_with_the_database_gone_a_notification_is_answered_503_and_kept_only_once_it_is_back(database_url):
    async with CuttableLink(database_url) as link, stack_behind(link) as stack:
        await stack.create_seller("tenun")
        await stack.place_order("INV-OUTAGE-1", ITEMS)
        body = notification_body("INV-OUTAGE-1", AMOUNT)
        link.cut()
        r = await stack.notify(body)
        assert_problem(r, 503, "database_unavailable")
        assert r.headers["retry-after"]
        r = await stack.notify(body, client_id="MCH-NOBODY", secret_key="x")  # the lookup itself needs the database
        assert r.status_code in (401, 503)
        link.up = True
        r = await stack.notify(body)  # DOKU delivers again
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "captured"
        stack.database_url = database_url  # read the inbox directly, not through the link
        inbox = await stack.inbox("INV-OUTAGE-1")
        assert [n["outcome"] for n in inbox] == ["captured"]  # the unanswered delivery was never kept
        assert (await stack.assert_books_balance())["doku:clearing"] == AMOUNT


async def test_a_secret_changed_through_one_worker_is_used_by_the_other_at_once(stack: Stack):
    """Two workers on one database; the platform rotates its DOKU secret through the first while the
    second has the old one cached: the second still accepts notifications signed with the new one."""
    settings = load_settings(
        {},
        database_url=stack.database_url,
        status_check_enabled=False,
        pool_min=1,
        pool_max=4,
        auto_migrate=False,
        secrets_key=SECRETS_KEY,
        doku_allow_loopback_http=True,
        gateway_cache_ttl_s=3600.0,
    )
    async with serve_app(create_app(settings)) as other_url, httpx.AsyncClient(base_url=other_url) as other:
        await stack.create_seller("tenun")
        await stack.place_order("INV-ROTATE-1", ITEMS)
        await stack.place_order("INV-ROTATE-2", ITEMS)
        body = notification_body("INV-ROTATE-1", AMOUNT)
        r = await other.post(NOTIFICATION_PATH, content=body, headers=notification_headers(body))
        assert r.json()["outcome"] == "captured"  # the second worker has now cached the old secret
        r = await stack.client.put(
            "/v1/platform/gateway",
            json={"client_id": CLIENT_ID, "secret_key": "SK-rotated", "fee_bps": 150, "fee_fixed": 1000},
        )
        assert r.status_code == 200, r.text
        body = notification_body("INV-ROTATE-2", AMOUNT)
        r = await other.post(
            NOTIFICATION_PATH, content=body, headers=notification_headers(body, secret_key="SK-rotated")
        )
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "captured"
        r = await other.post(NOTIFICATION_PATH, content=body, headers=notification_headers(body))  # the old secret
        assert_problem(r, 401, "invalid_signature")
