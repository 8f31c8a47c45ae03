"""Request ids, structured access logs and request metrics, as one plain ASGI middleware.

Rule: every request gets an id (the caller's ``X-Request-Id`` when sane, else a new one) that is
echoed in the response, attached to every problem body and written in every log line.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.logs import current_request_id
from api.metrics import METRICS

log = logging.getLogger("splitledger.access")
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class _RequestIds:
    """New request ids: a random prefix per process and a counter (unique, and no system call per
    request, as ``secrets`` would make)."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)  # each worker process its own prefix

    def renew(self) -> None:
        self.prefix = secrets.token_hex(4)
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):08x}"


new_request_id = _RequestIds()


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and SANE_REQUEST_ID.match(incoming) else new_request_id()
        try:
            scope["state"]["request_id"] = request_id
        except KeyError:
            scope["state"] = {"request_id": request_id}
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
            elapsed = time.perf_counter() - started
            label = str(scope.get("path_template") or "unmatched")
            METRICS.observe_request(scope.get("method", "GET"), label, status_holder["status"], elapsed)
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status_holder["status"],
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
