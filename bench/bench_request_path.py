"""What the app adds per request beyond the framework.

Serves ``GET /health`` (one ``SELECT 1`` on the pool) from two granian servers with one worker each,
on the same fresh database, one after the other:

  * the framework alone (``bench/bare_app.py``: litestar + asyncpg, the same query, nothing else), and
  * ``splitledger serve`` (request ids, JSON access logs, metrics, problem+json handlers, typed
    dependencies, the DOKU probe),

and drives each with the same separate load process (``bench/loadgen.py``, keep-alive connections).
Prints requests/s, p50/p99 and CPU per request of each server, and the app's overhead per request.

Run:  python bench/bench_request_path.py [--requests 20000] [--connections 32] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from api.keyring import generate_key  # noqa: E402
from bench.bench_notifications import cpu_seconds, free_port, load, process_tree  # noqa: E402
from bench.common import fresh_database, machine  # noqa: E402
from bench.loadgen import write_requests  # noqa: E402


async def serve_and_load(
    name: str, command: list[str], env: dict[str, str], port: int, files: tuple[Path, Path], args: argparse.Namespace
) -> tuple[str, float, float]:
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        async with httpx.AsyncClient() as probe:
            for _ in range(300):
                try:
                    if (await probe.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"{name} did not start")
        await load(files[0], port, args.connections)  # warm-up
        tree = process_tree(server.pid)
        profiler = None
        if args.profile and name == "splitledger" and shutil.which("py-spy"):
            worker = next(p for p in tree if p != server.pid)
            profiler = subprocess.Popen(  # noqa: ASYNC220
                ["py-spy", "record", "-p", str(worker), "-r", "250", "-f", "raw", "-o", args.profile],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        cpu0 = cpu_seconds(tree)
        result = await load(files[1], port, args.connections)
        cpu = cpu_seconds(tree) - cpu0
        if profiler is not None:
            profiler.send_signal(2)
            profiler.wait(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=60)
    n = int(result["sent"])  # type: ignore[call-overload]
    rate = n / float(result["wall_s"])  # type: ignore[arg-type]
    line = (
        f"{name:18} {rate:8.0f} req/s  p50 {float(result['p50_ms']):6.1f} ms  p99 {float(result['p99_ms']):6.1f} ms"  # type: ignore[arg-type]
        f"  server CPU {cpu / n * 1e6:5.0f} µs/request  answers {result['statuses']}"
    )
    return line, rate, cpu / n


async def main(args: argparse.Namespace) -> None:
    scratch = tempfile.TemporaryDirectory(prefix="splitledger-path-")  # removed at exit
    workdir = Path(scratch.name)
    lines = []
    async with fresh_database() as url:
        port = free_port()
        request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        files = (workdir / "warm.bin", workdir / "run.bin")
        write_requests(files[0], [request] * 2_000)
        write_requests(files[1], [request] * args.requests)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SPLITLEDGER_STATUS_CHECK_ENABLED": "false",
            "SPLITLEDGER_SECRETS_KEY": os.environ.get("SPLITLEDGER_SECRETS_KEY") or generate_key(),
            "SPLITLEDGER_RATE_LIMIT_ENABLED": "false",  # measure the service, not its abuse limits
        }
        bare = [
            sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--workers", "1",
            "--port", str(port), "bench.bare_app:create",
        ]  # fmt: skip
        ours = [sys.executable, "-m", "api.cli", "serve", "--workers", "1", "--port", str(port), "--no-migrate"]
        line, bare_rate, bare_cpu = await serve_and_load("framework alone", bare, env, port, files, args)
        lines.append(line)
        line, our_rate, our_cpu = await serve_and_load("splitledger", ours, env, port, files, args)
        lines.append(line)
    print(f"machine: {machine()}; GET /health, {args.connections} keep-alive connections, 1 worker each")
    print("\n".join(lines))
    print(
        f"the app's own work: {(our_cpu - bare_cpu) * 1e6:.0f} µs of CPU per request"
        f" ({our_cpu / bare_cpu:.1f}x the framework's); throughput {bare_rate / our_rate:.1f}x lower"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile", help="write the splitledger worker's py-spy profile (collapsed stacks) here")
    asyncio.run(main(parser.parse_args()))
