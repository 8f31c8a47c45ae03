"""Deliveries survive the process: ``splitledger serve`` killed (``kill -9``-style) between the commit
of an event and its delivery, or in the middle of a delivery, delivers it after the restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jenius.sandbox import Sandbox, SandboxMerchant, serve_sandbox
from tests.api.conftest import CLIENT_ID, SECRET_KEY, order_body, platform_at
from tests.integration.test_cli import free_port
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
ITEMS = [("Tenun ikat", 70_000, 1, "lurik")]


def serve(database_url: str, port: int, sandbox_url: str, **env: str) -> subprocess.Popen:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SPLITLEDGER_", "DATABASE_URL"))}
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--server", "uvicorn"],
        cwd=ROOT,
        env={
            **inherited,
            "DATABASE_URL": database_url,
            "SPLITLEDGER_STATUS_CHECK_ENABLED": "false",
            "SPLITLEDGER_DOKU_BASE_URL": sandbox_url,
            "SPLITLEDGER_WEBHOOKS_ALLOW_LOOPBACK": "true",
            "SPLITLEDGER_WEBHOOK_POLL_INTERVAL_S": "0.1",
            "SPLITLEDGER_WEBHOOK_BACKOFF_SCALE": "0.001",
            "SPLITLEDGER_WEBHOOK_TIMEOUT_S": "1",
            "SPLITLEDGER_WEBHOOK_LEASE_S": "2",
            "SPLITLEDGER_LOG_JSON": "false",
            "SPLITLEDGER_DOKU_ALLOW_LOOPBACK_HTTP": "true",  # the sandbox is plain http on loopback
            "SPLITLEDGER_SECRETS_KEY": os.environ["SPLITLEDGER_SECRETS_KEY"],
            "SPLITLEDGER_RATE_LIMIT_ENABLED": "false",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def healthy(proc: subprocess.Popen, base_url: str, timeout_s: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
        while asyncio.get_running_loop().time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited with {proc.returncode}")
            try:
                if (await client.get(f"{base_url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("serve did not answer /health in time")


async def exited(proc: subprocess.Popen, timeout_s: float = 30) -> int:
    for _ in range(int(timeout_s / 0.05)):
        if proc.poll() is not None:
            return proc.returncode
        await asyncio.sleep(0.05)
    raise AssertionError("the service did not die")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
async def doku() -> AsyncIterator[tuple[Sandbox, str]]:
    sandbox = Sandbox(fee_bps=150, fee_fixed=1000)
    async with serve_sandbox(sandbox) as url:
        yield sandbox, url


async def set_up(database_url: str, base_url: str, sandbox: Sandbox, receiver: Receiver) -> httpx.AsyncClient:
    """A platform with DOKU credentials, a seller, and an endpoint for every event."""
    sandbox.add_merchant(
        SandboxMerchant(
            client_id=CLIENT_ID, secret_key=SECRET_KEY, notification_url=f"{base_url}/v1/doku/notifications"
        )
    )
    _, api_key = await platform_at(database_url, "Toko Restart")
    client = httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30, trust_env=False
    )
    r = await client.put("/v1/platform/gateway", json={"client_id": CLIENT_ID, "secret_key": SECRET_KEY})
    assert r.status_code == 200, r.text
    assert (await client.post("/v1/sellers", json={"seller_id": "lurik", "name": "Lurik"})).status_code == 201
    r = await client.post("/v1/webhook-endpoints", json={"url": receiver.url, "events": ["*"]})
    assert r.status_code == 201, r.text
    receiver.secret = r.json()["secret"]
    return client


async def test_an_event_committed_just_before_a_kill_is_delivered_after_the_restart(
    database_url: str, doku: tuple[Sandbox, str]
) -> None:
    sandbox, sandbox_url = doku
    receiver = Receiver()
    await receiver.start()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # The first delivery attempt ends the process at once (os._exit: no cleanup, like kill -9),
    # after the event committed and the relay claimed it, before anything was sent.
    proc = serve(
        database_url, port, sandbox_url, SPLITLEDGER_FAULTS="webhook:before_send", SPLITLEDGER_FAULT_MODE="exit"
    )
    try:
        await healthy(proc, base_url)
        client = await set_up(database_url, base_url, sandbox, receiver)
        try:
            r = await client.post("/v1/orders", json=order_body("INV-KILL-1", ITEMS))
            assert r.status_code == 201, r.text
        except httpx.TransportError:
            pass  # the relay woke at the order's commit and killed the process before it answered
        assert await exited(proc) == 137
        await client.aclose()
        assert receiver.requests == []  # committed, claimed, never sent

        proc = serve(database_url, port, sandbox_url)  # restarted, nothing armed
        await healthy(proc, base_url)
        await receiver.wait_until(lambda: len(receiver.delivered()) == 1, 20, "not delivered after the restart")
        (got,) = receiver.delivered()
        assert got.event["type"] == "order.created" and got.event["data"]["invoice_number"] == "INV-KILL-1"
        assert receiver.signed_correctly(got, int(time.time()))
    finally:
        stop(proc)
        await receiver.stop()


async def test_a_process_killed_in_the_middle_of_a_delivery_delivers_it_after_the_restart(
    database_url: str, doku: tuple[Sandbox, str]
) -> None:
    sandbox, sandbox_url = doku
    receiver = Receiver(delay_s=20)  # the receiver holds the first delivery; the service dies meanwhile
    await receiver.start()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    proc = serve(database_url, port, sandbox_url, SPLITLEDGER_WEBHOOK_TIMEOUT_S="3")
    try:
        await healthy(proc, base_url)
        client = await set_up(database_url, base_url, sandbox, receiver)
        assert (await client.post("/v1/orders", json=order_body("INV-KILL-2", ITEMS))).status_code == 201
        await client.aclose()
        await receiver.wait_until(lambda: receiver.inflight == 1, 20, "the delivery never started")
        os.kill(proc.pid, signal.SIGKILL)
        assert await exited(proc) == -signal.SIGKILL
        receiver.delay_s = 0

        proc = serve(database_url, port, sandbox_url)
        await healthy(proc, base_url)
        await receiver.wait_until(
            lambda: any(r.event["data"]["invoice_number"] == "INV-KILL-2" for r in receiver.delivered()),
            30,
            "not delivered after the restart",
        )
        # at least once: the interrupted attempt may be recorded by the receiver too, with the same event id
        assert {r.event["id"] for r in receiver.requests} == {receiver.delivered()[0].event["id"]}
    finally:
        stop(proc)
        await receiver.stop()
