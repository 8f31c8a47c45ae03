"""HTTP throughput of the service under granian and uvicorn, on the same machine and database.

Starts ``splitledger serve --server <name> --workers <n>`` as a subprocess on a fresh database,
creates a platform with a seller and drives two endpoints with a Python (httpx) load generator for
a fixed time each:

  * ``GET /health``                              (no auth, one ``SELECT 1``)
  * ``GET /v1/sellers/{id}/balances``            (API-key auth + a balance read)

The load comes from ``wrk`` when it is installed (Debian package ``wrk``; one thread), else from a
Python httpx generator, which is much heavier. Either shares the machine's cores with the server and
PostgreSQL, so absolute numbers are lower than with a dedicated client; the comparison between
servers is what this is for.

Run:  python bench/bench_http.py [--seconds 8] [--concurrency 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from api.database import create_pool  # noqa: E402
from api.keyring import generate_key  # noqa: E402
from bench.common import fresh_database, machine  # noqa: E402
from ledger.service.platforms import create_platform  # noqa: E402
from ledger.store import Database  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, headers: dict[str, str], seconds: float, concurrency: int) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.get(url)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies, errors


def wrk_load(url: str, headers: dict[str, str], seconds: float, concurrency: int) -> str:
    args = ["wrk", "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rate = next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec"))
    lat = {
        parts[0]: parts[1]
        for parts in (line.split() for line in out.splitlines())
        if len(parts) == 2 and parts[0] in ("50%", "99%")
    }
    errors = next((line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line), "none")
    return f"{float(rate):8.0f} req/s  p50 {lat.get('50%', '?'):>8}  p99 {lat.get('99%', '?'):>8}  errors: {errors}"


async def run_server(server: str, workers: int, url: str, seconds: float, concurrency: int) -> list[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SPLITLEDGER_STATUS_CHECK_ENABLED": "false",
        "SPLITLEDGER_LOG_JSON": "false",
        "SPLITLEDGER_POOL_MAX": "10",
        "SPLITLEDGER_RATE_LIMIT_ENABLED": "false",  # measure the service, not its abuse limits
        "SPLITLEDGER_SECRETS_KEY": os.environ.get("SPLITLEDGER_SECRETS_KEY") or generate_key(),
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, "-m", "api.cli", "serve", "--server", server, "--workers", str(workers), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as probe:
            for _ in range(200):
                try:
                    if (await probe.get(base + "/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"{server} did not start")
        pool = await create_pool(url, min_size=1, max_size=1)
        try:
            _, key = await create_platform(Database(pool), f"bench {server}")
        finally:
            await pool.close()
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base, headers=auth) as client:
            assert (await client.post("/v1/sellers", json={"seller_id": "s1", "name": "s1"})).status_code == 201
        lines = []
        for label, path, headers in (
            ("GET /health", "/health", {}),
            ("GET /v1/sellers/s1/balances", "/v1/sellers/s1/balances", auth),
        ):
            await load(base + path, headers, 1.0, concurrency)  # warm-up
            if shutil.which("wrk"):
                result = await asyncio.to_thread(wrk_load, base + path, headers, seconds, concurrency)
                lines.append(f"{server:8} workers={workers} {label:30} {result}   (wrk)")
                continue
            count, latencies, errors = await load(base + path, headers, seconds, concurrency)
            q = statistics.quantiles(latencies, n=100)
            lines.append(
                f"{server:8} workers={workers} {label:30} {count / seconds:8.0f} req/s  "
                f"p50 {q[49] * 1000:6.1f} ms  p99 {q[98] * 1000:6.1f} ms  errors {errors}"
            )
        return lines
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def main(seconds: float, concurrency: int, workers: int) -> None:
    async with fresh_database() as url:
        results = []
        for server in ("granian", "uvicorn"):
            results += await run_server(server, workers, url, seconds, concurrency)
    print(f"machine: {machine()}; {concurrency} concurrent keep-alive connections, {seconds:g} s per endpoint")
    print("\n".join(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency, args.workers))
