"""``python -m jenius.sandbox`` (what ``splitledger sandbox`` runs): a real process a client can pay."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from jenius.client import JeniusClient
from jenius.sandbox import parse_merchant
from tests.jenius.conftest import CLIENT_ID, SECRET_KEY, client_config, payment

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_standalone_sandbox_serves_signed_payments_and_stops_on_sigint() -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SPLITLEDGER_SANDBOX_MERCHANTS": "MCH-env:SK-env:http://127.0.0.1:9/n",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jenius.sandbox",
        "--port",
        str(port),
        "--merchant",
        f"{CLIENT_ID}:{SECRET_KEY}",
        "--retry-schedule",
        "0.1,0.2",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url) as http:
            for _ in range(200):
                try:
                    if (await http.get("/_sandbox/faults")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.025)
            else:
                pytest.fail("the standalone sandbox did not come up")
            async with JeniusClient(client_config(base_url)) as doku:
                result = await doku.request_payment(payment("INV-1"), request_id="rid")
            approved = await http.post("/_sandbox/orders/INV-1/approve")
        assert (result.status, approved.status_code) == ("SUCCESS", 200)
    finally:
        process.send_signal(signal.SIGINT)
        stdout, _ = await asyncio.wait_for(process.communicate(), timeout=10)
    output = stdout.decode()
    assert f"merchant {CLIENT_ID}" in output and "merchant MCH-env" in output


@pytest.mark.parametrize(
    ("spec", "url"),
    [("MCH-1:SK-1:http://127.0.0.1:8000/hooks/doku", "http://127.0.0.1:8000/hooks/doku"), ("MCH-1:SK-1", None)],
)
def test_merchant_specs_keep_colons_in_the_url(spec: str, url: str | None) -> None:
    merchant = parse_merchant(spec)
    assert (merchant.client_id, merchant.secret_key, merchant.notification_url) == ("MCH-1", "SK-1", url)


@pytest.mark.parametrize("spec", ["", "MCH-1", ":SK-1"])
def test_incomplete_merchant_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_merchant(spec)
