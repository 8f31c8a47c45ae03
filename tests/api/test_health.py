"""``/health``: the database decides healthy or not; DOKU's reachability is reported beside it."""

from __future__ import annotations

import socket

from tests.api.conftest import Stack, poll, start_stack


async def _probed(stack: Stack) -> dict:
    async def checked() -> dict | None:
        body = (await stack.anon.get("/health")).json()
        return body if body.get("doku", {}).get("checked_at") else None

    return await poll(checked, 5.0, "the DOKU probe never ran")


async def test_health_reports_doku_reachable_when_the_sandbox_answers(stack: Stack) -> None:
    body = await _probed(stack)
    assert body["status"] == "ok" and body["database"]["ok"] is True
    assert body["doku"]["ok"] is True
    assert [e["url"] for e in body["doku"]["endpoints"]] == [stack.sandbox_url]


async def test_health_is_degraded_not_down_when_doku_is_unreachable(database_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    async for stack in start_stack(database_url, doku_base_url=closed):
        r = await stack.anon.get("/health")
        assert r.status_code == 200
        body = await _probed(stack)
        assert body["status"] == "degraded"
        assert body["database"]["ok"] is True
        assert body["doku"]["ok"] is False and body["doku"]["endpoints"][0]["url"] == closed
