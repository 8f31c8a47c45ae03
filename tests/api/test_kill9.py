"""A real ``splitledger serve`` process killed with SIGKILL while refunds and payouts are in flight,
then restarted on the same port: every request retried with its Idempotency-Key happens exactly once.

The server is uvicorn with one worker, so the process we start is the process that serves (checked:
it has no children) and the process we kill. DOKU is the in-process sandbox on loopback; the service
runs with a 1 s idempotency lease, so a key whose execution died between phases is taken over by the
next retry after a second. Counted afterwards, straight from the database and the sandbox: one payout
row per payout key, one refund row per refund key and one refund at DOKU per Request-Id, each
seller's money down by exactly its payouts and its share of the refunds, a zero trial balance, and
every key finished. Two deterministic variants end the process (``os._exit``) exactly at a refund's
boundary: after its reservation committed, and after DOKU refunded but before the answer was booked.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.database import create_pool
from jenius.sandbox import Sandbox, SandboxMerchant, serve_sandbox
from ledger.service.platforms import create_platform
from ledger.store import Database
from tests.api.conftest import CLIENT_ID, COMMISSION_BPS, FEE_BPS, FEE_FIXED, NOTIFICATION_PATH, SECRET_KEY, poll

ROOT = Path(__file__).resolve().parents[2]
WIB = timezone(timedelta(hours=7), "WIB")
SELLERS = ("batik", "tenun", "ulos", "songket")
ORDER_AMOUNT = 1_000_000  # per order; the seller's net is 950 000
REFUND = 50_000
PAYOUT = 25_000
CUT_OFF = ("RemoteProtocolError", "ReadError", "WriteError")  # the server died with the request inside it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[str]:
    found: list[str] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += (task / "children").read_text().split()
    return found


@dataclass
class Served:
    """``splitledger serve --server uvicorn --workers 1`` as a child process on a fixed loopback port."""

    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def spawn(self, extra: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "api.cli",
                    "serve",
                    "--server",
                    "uvicorn",
                    "--workers",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                env={**self.env, **extra},
                stdout=log,
                stderr=log,
            )

    async def start(self, **extra: str) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.proc = proc = self.spawn(extra)

        async def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited with {proc.returncode}; see {self.log}")
            try:
                async with httpx.AsyncClient(trust_env=False, timeout=1) as c:
                    return (await c.get(f"http://127.0.0.1:{self.port}/health")).status_code == 200
            except httpx.TransportError:
                return False

        await poll(healthy, 30.0, "serve did not answer /health within 30 s")
        assert children_of(proc.pid) == [], "the process we kill must be the server itself"

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    async def died(self) -> int:
        """The exit status of a process that ends by itself (an armed fault in exit mode)."""
        assert self.proc is not None
        proc = self.proc

        async def ended() -> bool:
            return proc.poll() is not None

        await poll(ended, 10.0, "the server did not die")
        return proc.returncode

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class World:
    server: Served
    sandbox: Sandbox
    client: httpx.AsyncClient
    platform_id: str
    database_url: str
    invoices: dict[str, list[str]] = field(default_factory=dict)  # seller -> its captured orders

    async def db(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def balances(self) -> dict[str, dict[str, int]]:
        found = {}
        for seller in SELLERS:
            r = await self.client.get(f"/v1/sellers/{seller}/balances")
            assert r.status_code == 200, r.text
            found[seller] = r.json()
        return found

    async def assert_books_balance(self) -> None:
        r = await self.client.get("/v1/ledger/trial-balance")
        assert r.status_code == 200, r.text
        assert r.json()["totals"] == {"IDR": 0}, r.json()

    async def capture(self, seller: str, count: int) -> list[str]:
        """``count`` orders of one seller, paid in the sandbox and captured by its notifications."""
        invoices = [f"INV-{seller}-{secrets.token_hex(3)}" for _ in range(count)]
        for invoice in invoices:
            body = {
                "invoice_number": invoice,
                "amount": ORDER_AMOUNT,
                "line_items": [{"name": "Kain", "price": ORDER_AMOUNT, "quantity": 1, "seller_id": seller}],
                "customer": {"name": "Astari", "email": "astari@example.com", "phone": "081288910205"},
                "redirect_url": "https://shop.example/return",
                "cash_tag": "$astari",
            }
            r = await self.client.post("/v1/orders", json=body)
            assert (r.status_code, r.json()["status"]) == (201, "pending"), r.text
            await self.sandbox.approve(invoice, client_id=CLIENT_ID)
        await self.sandbox.drain()

        async def all_captured() -> bool:
            for invoice in invoices:
                if (await self.client.get(f"/v1/orders/{invoice}")).json()["status"] != "captured":
                    return False
            return True

        await poll(all_captured, 10.0, "the orders were never captured")
        self.invoices.setdefault(seller, []).extend(invoices)
        return invoices

    async def settle_everything(self) -> None:
        days = {
            self.sandbox.order(i, client_id=CLIENT_ID).captured_at.astimezone(WIB).date()  # type: ignore[union-attr]
            for invoices in self.invoices.values()
            for i in invoices
        }
        for day in sorted(days):
            report = self.sandbox.settlement_report_csv(day, client_id=CLIENT_ID)
            r = await self.client.post("/v1/settlements", content=report.encode(), headers={"Content-Type": "text/csv"})
            assert r.status_code == 201 and r.json()["exception_count"] == 0, r.text


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    sandbox = Sandbox(fee_bps=FEE_BPS, fee_fixed=FEE_FIXED, retry_schedule_s=(0.05, 0.1, 0.2))
    port = free_port()
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        platform_id, api_key = await create_platform(Database(pool), "Toko Tahan Banting")
    finally:
        await pool.close()
    async with serve_sandbox(sandbox) as sandbox_url:
        sandbox.add_merchant(
            SandboxMerchant(
                client_id=CLIENT_ID,
                secret_key=SECRET_KEY,
                notification_url=f"http://127.0.0.1:{port}{NOTIFICATION_PATH}",
            )
        )
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SPLITLEDGER_") and k != "DATABASE_URL"}
        env = {
            **inherited,
            "DATABASE_URL": database_url,
            "SPLITLEDGER_DOKU_BASE_URL": sandbox_url,
            "SPLITLEDGER_IDEMPOTENCY_LEASE_S": "1",
            "SPLITLEDGER_STATUS_CHECK_ENABLED": "false",
            "SPLITLEDGER_DOKU_PROBE_INTERVAL_S": "0",
            "SPLITLEDGER_DOKU_ALLOW_LOOPBACK_HTTP": "true",  # the sandbox is plain http on loopback
            "SPLITLEDGER_SECRETS_KEY": os.environ["SPLITLEDGER_SECRETS_KEY"],
            "SPLITLEDGER_RATE_LIMIT_ENABLED": "false",  # a stream of requests as fast as the server takes them
        }
        server = Served(env=env, port=port, log=tmp_path / "serve.log")
        try:
            await server.start()
            limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                trust_env=False,
                timeout=15,
                headers={"Authorization": f"Bearer {api_key}"},
                limits=limits,
            ) as client:
                r = await client.put(
                    "/v1/platform/gateway",
                    json={
                        "client_id": CLIENT_ID,
                        "secret_key": SECRET_KEY,
                        "fee_bps": FEE_BPS,
                        "fee_fixed": FEE_FIXED,
                        "fee_bearer": "platform",
                        "commission_bps": COMMISSION_BPS,
                    },
                )
                assert r.status_code == 200, r.text
                for seller in SELLERS:
                    r = await client.post("/v1/sellers", json={"seller_id": seller, "name": f"Toko {seller}"})
                    assert r.status_code == 201, r.text
                yield World(
                    server=server, sandbox=sandbox, client=client, platform_id=platform_id, database_url=database_url
                )
        finally:
            server.stop()


# -- one request, sent until it has a final answer ------------------------------------------------------


@dataclass
class Req:
    kind: str  # "refund" or "payout"
    seller: str
    path: str
    body: dict[str, Any]
    key: str = field(default_factory=lambda: f"k9-{secrets.token_hex(8)}")
    answers: list[httpx.Response | str] = field(default_factory=list)  # every attempt: an answer or an error

    @property
    def final(self) -> httpx.Response | None:
        last = self.answers[-1] if self.answers else None
        return last if isinstance(last, httpx.Response) and not retryable(last) else None


def retryable(r: httpx.Response) -> bool:
    """What a client must retry: the database or server is not back yet, or the key's lease still runs."""
    if r.status_code == 503:
        return True
    return r.status_code == 409 and r.json().get("code") == "idempotency_in_progress"


async def send_once(client: httpx.AsyncClient, req: Req) -> None:
    try:
        r = await client.post(req.path, json=req.body, headers={"Idempotency-Key": req.key})
    except httpx.TransportError as exc:  # the server died under the request, or is not listening
        req.answers.append(type(exc).__name__)
        return
    req.answers.append(r)


async def send_until_final(client: httpx.AsyncClient, req: Req, *, attempts: int = 80) -> httpx.Response:
    for _ in range(attempts):
        await send_once(client, req)
        if req.final is not None:
            return req.final
        await asyncio.sleep(0.1)
    raise AssertionError(f"{req.kind} {req.key} never answered: {req.answers[-3:]}")


async def run_concurrently(reqs: list[Req], work: Any, connections: int = 8) -> None:
    queue: asyncio.Queue[Req] = asyncio.Queue()
    for req in reqs:
        queue.put_nowait(req)

    async def worker() -> None:
        while not queue.empty():
            await work(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(connections)))


def refund_req(seller: str, invoice: str) -> Req:
    return Req("refund", seller, f"/v1/orders/{invoice}/refunds", {"amount": REFUND, "reason": "rusak"})


def payout_req(seller: str, n: int) -> Req:
    return Req("payout", seller, "/v1/payouts", {"seller_id": seller, "amount": PAYOUT + n, "reference": f"TRF-{n}"})


# -- the checks -----------------------------------------------------------------------------------------


async def assert_exactly_once(world: World, reqs: list[Req], before: dict[str, dict[str, int]]) -> None:
    finals = {req.key: req.final for req in reqs}
    assert all(r is not None and r.status_code == 201 for r in finals.values()), {
        req.key: req.answers[-1] for req in reqs if req.final is None or req.final.status_code != 201
    }
    payouts = [req for req in reqs if req.kind == "payout"]
    refunds = [req for req in reqs if req.kind == "refund"]
    payout_ids = {req.key: req.final.json()["payout_id"] for req in payouts}  # type: ignore[union-attr]
    refund_ids = {req.key: req.final.json()["refund_id"] for req in refunds}  # type: ignore[union-attr]
    assert len(set(payout_ids.values())) == len(payouts) and len(set(refund_ids.values())) == len(refunds)

    rows = await world.db(
        "SELECT payout_id, seller_id, amount, status FROM payouts WHERE platform_id = $1", world.platform_id
    )
    assert sorted(r["payout_id"] for r in rows) == sorted(payout_ids.values())  # one row per key, no orphans
    by_key = {req.key: req for req in payouts}
    stored = {r["payout_id"]: r for r in rows}
    for key, payout_id in payout_ids.items():
        row = stored[payout_id]
        assert (row["seller_id"], row["amount"], row["status"]) == (
            by_key[key].seller,
            by_key[key].body["amount"],
            "pending",
        )

    rows = await world.db(
        "SELECT refund_id, invoice_number, status FROM refunds WHERE platform_id = $1", world.platform_id
    )
    assert sorted(r["refund_id"] for r in rows) == sorted(refund_ids.values())
    assert {r["status"] for r in rows} <= {"succeeded"}
    at_doku = [(x.request_id, x.amount, o.invoice_number) for o in world.sandbox.orders() for x in o.refunds]
    assert sorted(at_doku) == sorted((r["refund_id"], REFUND, r["invoice_number"]) for r in rows)

    entries = dict(
        await world.db(
            "SELECT kind, count(*) FROM journal_entries WHERE platform_id = $1 AND kind IN ('payout', 'refund') "
            "GROUP BY kind",
            world.platform_id,
        )
    )
    assert entries == {k: v for k, v in (("payout", len(payouts)), ("refund", len(refunds))) if v}
    unfinished = await world.db(
        "SELECT key FROM idempotency_keys WHERE platform_id = $1 AND status <> 'done'", world.platform_id
    )
    assert [r["key"] for r in unfinished if r["key"].startswith("k9-")] == []

    reversals = {req.final.json()["refund_id"]: req.final.json()["reversal"] for req in refunds}  # type: ignore[union-attr]
    after = await world.balances()
    for seller in before:
        paid_out = sum(req.body["amount"] for req in payouts if req.seller == seller)
        refunded = sum(reversals[refund_ids[req.key]][seller] for req in refunds if req.seller == seller)
        held_before = before[seller]["available"] + before[seller]["pending"] - before[seller]["debt"]
        held_after = after[seller]["available"] + after[seller]["pending"] - after[seller]["debt"]
        assert held_before - held_after == paid_out + refunded, seller
        assert after[seller]["debt"] == 0
    await world.assert_books_balance()


# -- the tests ------------------------------------------------------------------------------------------


async def test_kill9_during_a_stream_of_refunds_and_payouts_loses_and_doubles_nothing(world: World) -> None:
    for seller in SELLERS:
        await world.capture(seller, 6)
    await world.settle_everything()
    before = await world.balances()
    assert all(b["available"] == 6 * 950_000 and b["pending"] == 0 for b in before.values()), before

    reqs = [refund_req(seller, invoice) for seller in SELLERS for invoice in world.invoices[seller]]
    reqs += [payout_req(seller, n) for seller in SELLERS for n in range(10)]
    random.Random(9).shuffle(reqs)  # refunds and payouts of every seller interleaved
    assert len(reqs) == 64

    world.sandbox.faults.latency_s = 0.05  # DOKU takes its time: refunds are killed between their phases
    answered = 0
    killed = False

    async def first_attempt(req: Req) -> None:
        nonlocal answered, killed
        await send_once(world.client, req)
        if isinstance(req.answers[-1], httpx.Response):
            answered += 1
        if answered >= 16 and not killed:
            killed = True
            world.server.kill9()  # the other connections' requests are in flight

    await asyncio.wait_for(run_concurrently(reqs, first_attempt), 30)
    assert killed
    lost = [req for req in reqs if req.final is None]
    cut = [req for req in lost if req.answers[-1] in CUT_OFF]
    assert 16 <= len(reqs) - len(lost) < len(reqs), "the kill came while the stream was running"
    assert cut, "at least one request was cut off inside the server"
    first_answers = {req.key: req.final.content for req in reqs if req.final is not None}

    await world.server.start()
    await asyncio.wait_for(run_concurrently(reqs, lambda req: send_until_final(world.client, req)), 40)

    for req in reqs:  # what was answered before the kill is the answer, byte for byte
        if req.key in first_answers:
            assert req.final is not None and req.final.content == first_answers[req.key]
            assert req.final.headers.get("idempotent-replayed") == "true"
    await assert_exactly_once(world, reqs, before)


@pytest.mark.parametrize(
    ("point", "doku_refunded"),
    [
        ("refund_reserved:after_commit", False),  # reserved here, DOKU not asked yet
        ("gateway:after_call", True),  # DOKU refunded, nothing of its answer stored
    ],
)
async def test_a_server_dying_at_a_refund_boundary_refunds_once_after_restart(
    world: World, point: str, doku_refunded: bool
) -> None:
    (invoice,) = await world.capture("batik", 1)
    before = await world.balances()
    world.server.kill9()  # (the quickest way down; nothing is in flight)
    await world.server.start(SPLITLEDGER_FAULTS=point, SPLITLEDGER_FAULT_MODE="exit")

    req = refund_req("batik", invoice)
    await send_once(world.client, req)
    assert len(req.answers) == 1 and req.answers[0] in CUT_OFF, req.answers  # the connection died with the process
    assert await world.server.died() == 137  # os._exit at the armed point, nothing after it
    (row,) = await world.db("SELECT refund_id, status FROM refunds WHERE platform_id = $1", world.platform_id)
    assert row["status"] == "requested"
    assert [x.request_id for x in world.sandbox.order(invoice, client_id=CLIENT_ID).refunds] == (
        [row["refund_id"]] if doku_refunded else []
    )

    await world.server.start()
    answer = await send_until_final(world.client, req)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["status"], answer.json()["refund_id"]) == ("succeeded", row["refund_id"])
    replay = await send_until_final(world.client, req)
    assert replay.content == answer.content and replay.headers.get("idempotent-replayed") == "true"
    await assert_exactly_once(world, [req], before)
