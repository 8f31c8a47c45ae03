"""A small HTTP/1.1 load generator for the benchmarks, run as its own process.

It reads pre-built requests (each one a complete HTTP/1.1 request: request line, headers, body,
length-prefixed in a file), sends each exactly once over ``--connections`` keep-alive connections
(closed loop: a connection sends its next request when the answer to the last one is in), and
prints one JSON line: how many were sent, the wall time, each answer's status count and latency
percentiles. Plain asyncio streams and no HTTP client library, so the generator costs little of
the machine it shares with the service.

Run (by the benchmarks):  python bench/loadgen.py --requests FILE --port N [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import time
from collections import Counter
from pathlib import Path


def read_requests(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, at = [], 0
    while at < len(data):
        (length,) = struct.unpack_from(">I", data, at)
        out.append(data[at + 4 : at + 4 + length])
        at += 4 + length
    return out


def write_requests(path: Path, requests: list[bytes]) -> None:
    with path.open("wb") as f:
        for request in requests:
            f.write(struct.pack(">I", len(request)) + request)


async def run(host: str, port: int, requests: list[bytes], connections: int) -> dict[str, object]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    next_index = iter(range(len(requests)))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in next_index:
                started = time.perf_counter()
                writer.write(requests[i])
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                statuses[int(head[9:12])] += 1
                marker = body.find(b'"outcome":"')
                if marker >= 0:
                    outcomes[body[marker + 11 : body.find(b'"', marker + 11)].decode()] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    wall = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {
        "sent": len(latencies),
        "wall_s": wall,
        "statuses": dict(statuses),
        "outcomes": dict(outcomes),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        "cpu_s": time.process_time(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    requests = read_requests(args.requests)
    print(json.dumps(asyncio.run(run(args.host, args.port, requests, args.connections))), flush=True)


if __name__ == "__main__":
    main()
