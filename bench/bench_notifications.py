"""End to end: a flash sale's DOKU notifications against ``splitledger serve --workers 2``.

Pre-creates ``--notifications`` pending orders (2 or 3 of ``--sellers`` sellers each) on a fresh
database, starts the real service (``python -m api.cli serve``, granian, JSON logs on, status
checks off), and from a separate load process on loopback (``bench/loadgen.py``: plain asyncio,
``--connections`` keep-alive connections) sends one DOKU-signed SUCCESS notification per order, plus
a resend with a new Request-Id for ``--duplicates`` of them, in random order. Prints
notifications/s, p50/p99, each worker's peak resident memory, CPU per notification (service,
PostgreSQL, load generator), and checks that every order was captured exactly once and every
answered notification is in the inbox. A warm-up round runs first, on orders of its own.

Its last line is ``end to end: <N> notifications/s, p50 <a> ms, p99 <b> ms (<C> connections, <W> workers)``.

Run:  python bench/bench_notifications.py [--notifications 20000] [--connections 64] [--workers 2]
      [--profile FILE]   also records one worker with py-spy (collapsed stacks) during the measured round
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import msgspec  # noqa: E402

from api.database import create_pool  # noqa: E402
from api.keyring import generate_key, parse_keys  # noqa: E402
from bench.common import fresh_database, machine  # noqa: E402
from bench.loadgen import write_requests  # noqa: E402
from bench.marketplace import Marketplace, ServerCpu, add_orders, create_marketplace  # noqa: E402
from jenius import signing  # noqa: E402
from ledger.service.gateways import configure_gateway  # noqa: E402
from ledger.store import Database  # noqa: E402
from ledger.store.encryption import Keyring  # noqa: E402
from ledger.store.gateways import GatewaySettings  # noqa: E402

CLIENT_ID = "MCH-BENCH-0001"
SECRET_KEY = "SK-bench-secret"
PATH = "/v1/doku/notifications"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signed_request(invoice: str, amount: int, port: int) -> bytes:
    body = msgspec.json.encode(
        {
            "service": {"id": "INTERNET_BANKING"},
            "acquirer": {"id": "BTPN"},
            "channel": {"id": "JENIUS"},
            "order": {"invoice_number": invoice, "amount": amount},
            "transaction": {"status": "SUCCESS", "date": signing.format_timestamp(datetime.now(UTC))},
        }
    )
    request_id = secrets.token_hex(12)
    timestamp = signing.format_timestamp(datetime.now(UTC))
    signature = signing.sign(
        secret_key=SECRET_KEY, client_id=CLIENT_ID, request_id=request_id, timestamp=timestamp, target=PATH, body=body
    )
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nClient-Id: {CLIENT_ID}\r\nRequest-Id: {request_id}\r\n"
        f"Request-Timestamp: {timestamp}\r\nSignature: {signature}\r\n\r\n"
    )
    return head.encode() + body


def deliveries(market: Marketplace, invoices: list[str], duplicates: float, port: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chosen = invoices + rng.sample(invoices, int(len(invoices) * duplicates))
    rng.shuffle(chosen)
    return [signed_request(i, market.amounts[i], port) for i in chosen]


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def load(requests_file: Path, port: int, connections: int) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "loadgen.py"),
        "--requests",
        str(requests_file),
        "--port",
        str(port),
        "--connections",
        str(connections),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    result: dict[str, object] = json.loads(out)
    return result


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    scratch = tempfile.TemporaryDirectory(prefix="splitledger-e2e-")  # the signed requests; removed at exit
    workdir = Path(scratch.name)
    async with fresh_database() as url:
        pool = await create_pool(url, min_size=1, max_size=4)
        print(f"setting up {args.sellers} sellers and orders ...", file=sys.stderr, flush=True)
        market = await create_marketplace(pool, sellers=args.sellers)
        secrets_key = os.environ.get("SPLITLEDGER_SECRETS_KEY") or generate_key()
        await configure_gateway(
            Database(pool, keyring=Keyring(parse_keys(secrets_key))),
            market.platform_id,
            GatewaySettings(client_id=CLIENT_ID, secret_key=SECRET_KEY, fee_bps=150, fee_fixed=1000),
        )
        warm = await add_orders(pool, market, "warm", args.warm_up)
        measured = await add_orders(pool, market, "flash", args.notifications)
        async with pool.acquire() as conn:
            server_cpu = await ServerCpu.of(conn)
            synchronous_commit = await conn.fetchval("SHOW synchronous_commit")
        write_requests(workdir / "warm.bin", deliveries(market, warm, args.duplicates, port, 1))
        sent = deliveries(market, measured, args.duplicates, port, 2)
        write_requests(workdir / "flash.bin", sent)

        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SPLITLEDGER_STATUS_CHECK_ENABLED": "false",
            "SPLITLEDGER_DOKU_PROBE_INTERVAL_S": "0",
            "SPLITLEDGER_LOG_JSON": "true",
            "SPLITLEDGER_SECRETS_KEY": secrets_key,
            "SPLITLEDGER_RATE_LIMIT_ENABLED": "false",  # measure the service, not its abuse limits
        }
        server = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
            [sys.executable, "-m", "api.cli", "serve", "--workers", str(args.workers), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # the JSON logs are written, to nobody
        )
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
                    raise RuntimeError("the service did not start")
            print("warm-up ...", file=sys.stderr, flush=True)
            await load(workdir / "warm.bin", port, args.connections)
            await pool.execute("ANALYZE")

            tree = process_tree(server.pid)
            workers = [p for p in tree if p != server.pid]
            peak = dict.fromkeys(workers, 0.0)
            sampling = True

            async def sample() -> None:
                while sampling:
                    for pid in workers:
                        peak[pid] = max(peak[pid], rss_mb(pid))
                    await asyncio.sleep(0.25)

            sampler = asyncio.create_task(sample())
            profiler = None
            if args.profile and shutil.which("py-spy") and workers:
                profiler = subprocess.Popen(  # noqa: ASYNC220 - the profiler runs beside the load
                    ["py-spy", "record", "-p", str(workers[0]), "-r", "250", "-f", "raw", "-o", args.profile],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            print(f"sending {len(sent)} notifications ...", file=sys.stderr, flush=True)
            service0, server0 = cpu_seconds(tree), server_cpu.seconds()
            started = time.perf_counter()
            result = await load(workdir / "flash.bin", port, args.connections)
            wall = time.perf_counter() - started
            service1, server1 = cpu_seconds(tree), server_cpu.seconds()
            if profiler is not None:
                profiler.send_signal(2)
                profiler.wait(timeout=60)
            sampling = False
            await sampler
        finally:
            server.terminate()
            server.wait(timeout=60)

        # Exactly once: every order captured by one entry; every answered delivery in the inbox.
        pid = market.platform_id
        flash = list(measured)
        captured = await pool.fetchval(
            "SELECT count(*) FROM orders WHERE platform_id = $1 AND status = 'captured' AND invoice_number = ANY($2)",
            pid,
            flash,
        )
        entries = await pool.fetchval(
            "SELECT count(*) FROM journal_entries"
            " WHERE platform_id = $1 AND kind = 'capture' AND external_ref = ANY($2)",
            pid,
            flash,
        )
        inbox = dict(
            await pool.fetch(
                "SELECT outcome, count(*) FROM notifications WHERE platform_id = $1 AND invoice_number = ANY($2)"
                " GROUP BY outcome",
                pid,
                flash,
            )
        )
        # Each batch is one transaction: its inbox rows share its transaction id.
        batches = await pool.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM notifications WHERE platform_id = $1 AND invoice_number = ANY($2)",
            pid,
            flash,
        )
        tb = await Database(pool).ledger.trial_balance(pid)
        await pool.close()

    n = int(result["sent"])  # type: ignore[call-overload]
    ok = result["statuses"] == {"200": n} or result["statuses"] == {200: n}
    dupes = len(sent) - len(measured)
    exactly_once = (
        captured == len(measured)
        and entries == len(measured)
        and inbox == {"captured": len(measured), **({"duplicate": dupes} if dupes else {})}
        and tb.is_balanced
    )
    rate = n / float(result["wall_s"])  # type: ignore[arg-type]
    srv = (server1 - server0) / n * 1e6 if server0 is not None and server1 is not None else float("nan")
    print(
        f"machine: {machine()}; synchronous_commit={synchronous_commit}; serve --workers {args.workers} (granian);"
        f" {args.connections} keep-alive connections from a separate load process; {args.sellers} sellers"
    )
    print(
        f"notifications: {n} ({len(measured)} orders, {dupes} resent), answers {result['statuses']},"
        f" outcomes {result['outcomes']}"
    )
    print(f"throughput: {rate:.0f} notifications/s over {wall:.1f} s")
    print(f"latency: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms")
    print(f"batches: {batches} transactions, {len(sent) / max(batches, 1):.1f} notifications each")
    print("peak RSS per worker: " + ", ".join(f"{mb:.0f} MB" for mb in peak.values()))
    print(
        f"CPU per notification: service {(service1 - service0) / n * 1e6:.0f} µs, PostgreSQL {srv:.0f} µs,"
        f" load generator {float(result['cpu_s']) / n * 1e6:.0f} µs"  # type: ignore[arg-type]
    )
    print(
        f"exactly once: {'yes' if exactly_once and ok else 'NO'} (captured {captured}/{len(measured)},"
        f" capture entries {entries}, inbox {inbox}, trial balance zero: {tb.is_balanced})"
    )
    p50, p99 = float(result["p50_ms"]), float(result["p99_ms"])  # type: ignore[arg-type]
    print(
        f"end to end: {rate:.0f} notifications/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        f" ({args.connections} connections, {args.workers} workers)"
    )
    if not (exactly_once and ok):
        sys.exit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--notifications", type=int, default=20_000, help="orders captured in the measured round")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of them DOKU sends twice")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sellers", type=int, default=2_000)
    parser.add_argument("--warm-up", type=int, default=3_000)
    parser.add_argument("--profile", help="write one worker's py-spy profile (collapsed stacks) here")
    asyncio.run(main(parser.parse_args()))
