"""A clean shutdown, with real processes and real signals, and the embedded PostgreSQL's recovery.

* SIGTERM sent to ``tasks.py`` alone (as systemd or a container runtime sends it) is forwarded; the
  demo stops the service, the sandbox and the embedded PostgreSQL, and ``tasks.py`` exits within
  seconds.
* Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops ``splitledger serve`` and
  the embedded PostgreSQL it started.
* A run killed with ``kill -9`` leaves its pid among the server's users and the server running; the
  next run recovers: it stops the server when it is done. A ``postmaster.pid`` naming a process that
  is not PostgreSQL (a reused pid) is removed and the server starts.
* Without the pgserver wheel, PostgreSQL's own server binaries are used (Debian's, here), and with
  neither the error says what to install.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from api.database import (
    EmbeddedPostgres,
    EmbeddedUnavailable,
    choose_server,
    find_server_binaries,
    pid_alive,
    postmaster_pid,
    read_handles,
)
from tests.integration.test_cli import free_port

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_BINARIES = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Outside pytest's own temporary root, which another pytest run may chmod 0700 at any moment
    (then PostgreSQL, running as another user when we are root, can no longer reach its data)."""
    path = Path(tempfile.mkdtemp(prefix="splitledger-shutdown-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env.update(
        SPLITLEDGER_DATA_DIR=str(tmp_path / "data"),
        SPLITLEDGER_DEMO_ENV=str(tmp_path / "demo.env"),
        SPLITLEDGER_VENV=sys.prefix,
        PYTHONUNBUFFERED="1",
    )
    return env


def read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float) -> str:
    """Everything ``proc`` printed up to the line containing ``marker``."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never printed (exit {proc.poll()}):\n" + "".join(seen)[-3000:])


def gone(pid: int, within_s: float = 10.0) -> bool:
    """The process has exited (PostgreSQL's last children may take a moment after pg_ctl stop)."""
    deadline = time.monotonic() + within_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def refused(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=2)
    except httpx.TransportError:
        return True
    return False


def test_sigterm_to_tasks_py_alone_stops_the_service_the_sandbox_and_postgres(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tasks.py"), "run"],
        cwd=ROOT,
        env=environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the signal reaches tasks.py only, not the demo it started
    )
    try:
        out = read_until(proc, "export PLATFORM=", timeout_s=300)
        api = re.search(r"export API=(\S+)", out)
        sandbox = re.search(r"export SANDBOX=(\S+)", out)
        assert api and sandbox, out
        postgres = postmaster_pid(tmp_path / "data" / "pgdata")
        assert postgres is not None and pid_alive(postgres)
        assert httpx.get(api[1] + "/health", timeout=5).status_code == 200
        assert (tmp_path / "demo.env").exists()

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 143, (code, proc.stdout.read() if proc.stdout else "")
    assert took < 15, f"tasks.py took {took:.1f} s to stop"
    assert refused(api[1]) and refused(sandbox[1])
    assert gone(postgres), "the embedded PostgreSQL is still running"
    assert not (tmp_path / "demo.env").exists()


def test_ctrl_c_stops_serve_and_the_embedded_postgres_it_started(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env={**environment(tmp_path), "SPLITLEDGER_STATUS_CHECK_ENABLED": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "serve never answered /health"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        postgres = postmaster_pid(tmp_path / "data" / "pgdata")
        assert postgres is not None and pid_alive(postgres)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert gone(postgres), f"the embedded PostgreSQL is still running (serve exited {code})"


async def _can_query(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


def test_a_run_killed_with_sigkill_is_recovered_at_the_next_start(tmp_path):
    data = tmp_path / "pgdata"
    killed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from api.database import EmbeddedPostgres; "
            "EmbeddedPostgres(Path(sys.argv[1])).start(); print('up', flush=True); time.sleep(600)",
            str(data),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None and killed.stdout.readline().strip() == "up"
    killed.kill()
    killed.wait()
    postgres = postmaster_pid(data)
    assert postgres is not None and pid_alive(postgres), "kill -9 leaves the server running"
    assert killed.pid in read_handles(data), "and its pid among the server's users"

    server = EmbeddedPostgres(data)
    url = server.start()
    assert killed.pid not in read_handles(data)
    assert asyncio.run(_can_query(url)) == 1
    server.stop()
    assert gone(postgres), "the next run stops the server the killed one left"

    # The server died too (a reboot, a container restart) and its pid now belongs to something else.
    (data / "postmaster.pid").write_text(f"{os.getpid()}\n{data}\n0\n5432\n{data}\n\n0 0\nready\n")
    server = EmbeddedPostgres(data)
    try:
        assert asyncio.run(_can_query(server.start())) == 1
    finally:
        server.stop()


def _binaries() -> Path:
    found = DEBIAN_BINARIES if DEBIAN_BINARIES.is_dir() else find_server_binaries()
    assert found is not None, "PostgreSQL server binaries are needed (.ci/run installs Debian's postgresql)"
    return found


def test_without_pgserver_the_embedded_mode_runs_postgresql_binaries(tmp_path):
    bin_dir = _binaries()
    assert choose_server({}, pgserver_installed=False, find_binaries=lambda env: bin_dir) == bin_dir
    assert choose_server({"SPLITLEDGER_PG_BIN": str(bin_dir)}, pgserver_installed=True) == bin_dir
    server = EmbeddedPostgres(tmp_path / "pgdata", bin_dir=bin_dir)
    url = server.start()
    try:
        assert asyncio.run(_can_query(url)) == 1
        postgres = postmaster_pid(tmp_path / "pgdata")
        assert postgres is not None and pid_alive(postgres)
    finally:
        server.stop()
    assert gone(postgres)


def test_with_neither_pgserver_nor_binaries_the_error_says_what_to_install(tmp_path):
    with pytest.raises(EmbeddedUnavailable) as refused_:
        choose_server({}, pgserver_installed=False, find_binaries=lambda env: None)
    assert "apt-get install postgresql" in refused_.value.hint and "DATABASE_URL" in refused_.value.hint
    found = find_server_binaries({}, which=lambda name: None, bindir_of_pg_config=lambda: None)
    assert found is None
    with pytest.raises(EmbeddedUnavailable):
        find_server_binaries({"SPLITLEDGER_PG_BIN": str(tmp_path)})
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "migrate"],
        cwd=ROOT,
        env={**environment(tmp_path), "SPLITLEDGER_PG_BIN": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: SPLITLEDGER_PG_BIN=") and lines[1].startswith("hint: "), result.stderr
    assert "Traceback" not in result.stderr
