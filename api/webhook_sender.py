"""The one seam to webhook receivers: an HTTP POST of the event's exact bytes through httpx.

Rule: every outcome is data (``SendResult``), never an exception: an answer's status, or why there
was none (timeout, refused connection, …). Redirects are not followed (a 3xx is not a 2xx), and
the body of the answer is not read beyond what closing the response needs.
"""

from __future__ import annotations

import httpx

from ledger.service.webhooks import SendResult

USER_AGENT = "splitledger-webhooks/1"


class HttpWebhookSender:
    def __init__(self, *, timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        try:
            async with self._client.stream("POST", url, content=body, headers=headers) as response:
                return SendResult(status=response.status_code)
        except httpx.TimeoutException as exc:
            return SendResult(error=f"timeout: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return SendResult(error=f"{type(exc).__name__}: {exc}"[:500])

    async def aclose(self) -> None:
        await self._client.aclose()
