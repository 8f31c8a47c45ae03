"""The ``splitledger`` command as a newcomer uses it: migrate, platforms create, serve (against a
given database and against the embedded one), and the demo story."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.cli import main
from api.database import create_pool
from ledger import chart, errors
from ledger.service.platforms import ApiKeyVerifier
from ledger.store import Database

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_platforms_create_prints_a_key_that_authenticates_once_stored_hashed(database_url, capsys):
    argv = ["--database-url", database_url, "platforms", "create", "--name", "Toko Maju", "--id", "toko-maju"]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out
    key = next(line.split()[-1] for line in out.splitlines() if line.startswith("api key:"))
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        assert await ApiKeyVerifier(Database(pool)).verify(key) == "toko-maju"
        with pytest.raises(errors.Unauthorized) as refused:
            await ApiKeyVerifier(Database(pool)).verify(key[:-1] + ("A" if key[-1] != "A" else "B"))
        assert refused.value.code == "unauthorized"
        stored = await pool.fetchval("SELECT key_hash FROM api_keys WHERE platform_id = 'toko-maju'")
        assert key.encode() not in bytes(stored) and key.split("_", 3)[3].encode() not in bytes(stored)
        accounts = await pool.fetchval("SELECT count(*) FROM accounts WHERE platform_id = 'toko-maju'")
        assert accounts == len(chart.platform_accounts()) == 8  # the platform's chart is opened with it
    finally:
        await pool.close()


def test_migrate_is_idempotent_from_the_command_line(database_url, capsys):
    assert main(["--database-url", database_url, "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


def _serve(env: dict[str, str], port: int) -> subprocess.Popen:
    inherited = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env={**inherited, **env, "SPLITLEDGER_STATUS_CHECK_ENABLED": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_healthy(proc: subprocess.Popen, port: int, timeout_s: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not answer /health in time")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_serve_answers_health_with_the_database_up(database_url):
    port = free_port()
    proc = _serve({"DATABASE_URL": database_url}, port)
    try:
        health = _wait_healthy(proc, port).json()
        assert health["database"]["ok"] is True
    finally:
        _stop(proc)


def test_serve_without_database_url_starts_embedded_postgres_that_survives_restarts(tmp_path):
    env = {"SPLITLEDGER_DATA_DIR": str(tmp_path / "data")}
    port = free_port()
    proc = _serve(env, port)
    try:
        assert _wait_healthy(proc, port).json()["database"]["ok"] is True
    finally:
        _stop(proc)
    assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()
    proc = _serve(env, port)  # same data directory: the migrated database is still there
    try:
        assert _wait_healthy(proc, port).json()["database"]["ok"] is True
    finally:
        _stop(proc)


def test_the_demo_tells_the_whole_story_and_ends_clean(database_url):
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "demo"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for step in ("[5]", "[6]", "[7]", "[8]", "[9]"):
        assert step in result.stdout
    assert "clean:" in result.stdout and "NOT clean" not in result.stdout
    # the platform hears of the capture from its webhook, and every event of the feed arrives signed
    assert "⇢ webhook order.captured" in result.stdout and "learnt of the capture from its webhook" in result.stdout
    delivered = re.search(r"webhooks: (\d+) of (\d+) events delivered, every signature valid", result.stdout)
    assert delivered is not None and delivered.group(1) == delivered.group(2) and int(delivered.group(1)) >= 7


async def test_status_check_and_settlement_import_from_the_command_line(database_url, monkeypatch, tmp_path, capsys):
    from datetime import datetime, timedelta, timezone

    from tests.api.conftest import CLIENT_ID, order_body, start_stack

    async for stack in start_stack(database_url):
        await stack.create_seller("tenun")
        stack.sandbox.faults.drop_notifications = 4  # the first delivery and every resend are lost
        r = await stack.client.post("/v1/orders", json=order_body("INV-CLI-1", [("Tenun", 120_000, 1, "tenun")]))
        assert r.status_code == 201 and r.json()["status"] == "pending"
        await stack.sandbox.approve("INV-CLI-1", client_id=CLIENT_ID)
        await stack.sandbox.drain()
        assert (await stack.client.get("/v1/orders/INV-CLI-1")).json()["status"] == "pending"

        monkeypatch.setenv("SPLITLEDGER_DOKU_BASE_URL", stack.sandbox_url)
        argv = ["--database-url", database_url, "status-check", "--older-than", "0"]
        assert await asyncio.to_thread(main, argv) == 0
        assert "checked 1 pending order" in capsys.readouterr().out
        order = (await stack.client.get("/v1/orders/INV-CLI-1")).json()
        assert order["status"] == "captured" and order["settled_at"] is None

        day = datetime.now(timezone(timedelta(hours=7))).date()
        report = tmp_path / "doku.csv"
        report.write_text(stack.sandbox.settlement_report_csv(day, client_id=CLIENT_ID))
        argv = ["--database-url", database_url, "import-settlement", "--platform", stack.platform_id, str(report)]
        assert await asyncio.to_thread(main, argv) == 0
        captured = capsys.readouterr()
        assert "1 line(s) booked, 0 exception(s)" in captured.out and "importing" in captured.err
        assert "1/1" in captured.err  # the progress bar's last state
        assert (await stack.client.get("/v1/orders/INV-CLI-1")).json()["settled_at"] is not None
        balances = (await stack.client.get("/v1/sellers/tenun/balances")).json()
        assert balances["pending"] == 0 and balances["available"] == 120_000 - 6_000  # 5 % commission
