"""A marketplace's webhook receiver, simulated on loopback: real HTTP/1.1, the real wire format.

It records every request (headers and the exact body bytes), answers with the statuses it is told
(``script``, then ``status``), can be slow (``delay_s``), and can go down and come back on the same
port (``stop`` refuses connections until ``start`` again), like a receiver being deployed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ledger.webhooks import verify_signature


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    path: str

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    secret: str = ""
    status: int = 200
    script: list[int] = field(default_factory=list)  # answered first, in order
    delay_s: float = 0.0
    answer_for: Callable[[dict[str, Any]], int] | None = None  # per event, overrides ``status``
    delay_for: Callable[[dict[str, Any]], float] | None = None  # per event, overrides ``delay_s``
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    inflight: int = 0
    max_inflight: int = 0  # most requests being answered at once
    _server: asyncio.Server | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            try:
                delay = self.delay_for(json.loads(body)) if self.delay_for is not None else self.delay_s
                if delay:
                    await asyncio.sleep(delay)
            finally:
                self.inflight -= 1
            if self.script:
                status = self.script.pop(0)
            elif self.answer_for is not None:
                status = self.answer_for(json.loads(body))
            else:
                status = self.status
            self.requests.append(Received(headers=headers, body=body, status=status, path=path))
            self._changed.set()
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    # -- what arrived ----------------------------------------------------------------------

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]

    def delivered_events(self) -> list[dict[str, Any]]:
        return [r.event for r in self.delivered()]

    def signed_correctly(self, received: Received, now: int) -> bool:
        return verify_signature(self.secret, received.headers.get("splitledger-signature", ""), received.body, now=now)

    async def wait_until(self, check: Callable[[], bool], timeout_s: float = 10.0, message: str = "") -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not check():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(message or f"receiver: condition not met; got {len(self.requests)} requests")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.1))
