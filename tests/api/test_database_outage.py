"""PostgreSQL stops under load and starts again: the service answers 503 ``database_unavailable``
(with ``Retry-After``) on every endpoint, fast, never a 500, leaves nothing half-written, and serves
again by itself once the database is back; every interrupted request retried with its key happens once.

The test owns a private embedded PostgreSQL (the session's shared one must never stop), stops it
with ``pg_ctl -m fast stop`` while a few tasks hammer health, authenticated reads, DOKU notifications,
order creation, refunds and payouts, and starts it again on the same socket. The service runs with
``db_acquire_timeout_s=0.5`` (an unreachable database is known within half a second) and
``idempotency_lease_s=1`` (a key whose execution lost the database between two phases, and so could
not release its lease, is taken over by a retry a second later instead of after 60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pgserver._commands import POSTGRES_BIN_PATH

from api.database import EmbeddedPostgres
from migrations.runner import migrate_url
from tests.api.conftest import (
    CLIENT_ID,
    PROBLEM_JSON,
    Stack,
    notification_body,
    order_body,
    poll,
    start_stack,
)

ACQUIRE_TIMEOUT_S = 0.5
FAST_ENOUGH_S = 1.0  # every 503 arrives within this
OUTAGE_S = 1.5
RECOVERY_S = 5.0
BIG = 2_000_000  # the order refunded in small parts, and the order whose settlement funds the payouts
SMALL = 1_000
MAX_SHOTS_PER_WORKER = 400
HELD_KINDS = {"refund"}  # it waits for DOKU, which the test holds across the stop
GATE_MAX_S = 15.0


class PrivatePostgres:
    """An embedded PostgreSQL of this test's own, stopped and started like an operator would."""

    def __init__(self, data_dir: Path) -> None:
        self.embedded = EmbeddedPostgres(data_dir, cleanup="delete")
        self.url = ""

    def start(self) -> str:
        self.url = self.embedded.start()
        return self.url

    def stop_server(self) -> None:
        server = self.embedded._server
        pg_ctl = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-w", "-t", "30", "-m", "fast", "stop"]
        with tempfile.TemporaryFile("w+") as out:  # (pg_ctl may hang on pipes: files, as pgserver does)
            done = subprocess.run(pg_ctl, stdout=out, stderr=out, user=server.system_user, text=True, check=False)
            out.seek(0)
            said = out.read()
        log = server.pgdata / "log"
        assert done.returncode == 0, (said, log.read_text()[-3000:] if log.exists() else "")

    def start_server(self) -> None:
        server = self.embedded._server
        # Without pgserver's machine-wide lock: the data directory is this test's alone.
        server.ensure_postgres_running()  # same data directory, same socket directory
        assert server.get_uri() == self.url


class HeldDoku(httpx.AsyncBaseTransport):
    """The service's HTTP to DOKU; the test can hold its refund calls at a gate (DOKU thinking) and release them."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.gate = asyncio.Event()
        self.gate.set()
        self.held: list[str] = []  # the paths of the calls that waited at the closed gate

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.gate.is_set() and "refund" in request.url.path.lower():
            self.held.append(request.url.path)
            with contextlib.suppress(TimeoutError):  # never longer than this, whatever the test does
                await asyncio.wait_for(self.gate.wait(), GATE_MAX_S)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        pass  # closed by the fixture, after the service


@dataclass
class Outage:
    stack: Stack
    pg: PrivatePostgres
    doku: HeldDoku


@pytest.fixture
async def outage() -> AsyncIterator[Outage]:
    # Not under pytest's tmp_path: any pytest starting on this machine makes that tree private to its
    # user again, and the embedded server may run as another user (pgserver does so under root).
    home = Path(tempfile.mkdtemp(prefix="splitledger-outage-"))
    pg = PrivatePostgres(home / "pgdata")
    doku = HeldDoku()
    url = await asyncio.to_thread(pg.start)
    try:
        await migrate_url(url)
        overrides = {"db_acquire_timeout_s": ACQUIRE_TIMEOUT_S, "idempotency_lease_s": 1}
        async for stack in start_stack(url, transport=doku, **overrides):
            yield Outage(stack, pg, doku)
    finally:
        doku.release()
        await doku.inner.aclose()
        await asyncio.to_thread(pg.embedded.stop)
        shutil.rmtree(home, ignore_errors=True)


# -- the load ---------------------------------------------------------------------------------------------


@dataclass
class Req:
    """A money-moving request as sent: to be retried with the same key and body."""

    kind: str
    path: str
    body: dict[str, Any]
    key: str = field(default_factory=lambda: f"out-{secrets.token_hex(8)}")
    final: httpx.Response | None = None


@dataclass
class Shot:
    kind: str
    sent: float
    took: float
    response: httpx.Response
    req: Req | None = None
    invoice: str | None = None


OK = {
    "health": 200,
    "balances": 200,
    "order": 200,
    "trial_balance": 200,
    "payouts_list": 200,
    "stranger": 401,
    "seller_create": 201,
    "notification": 200,
    "order_create": 201,
    "refund": 201,
    "payout": 201,
}


@dataclass
class Load:
    stack: Stack
    refund_invoice: str
    pending: list[str]  # orders DOKU will notify as paid, one per notification shot
    shots: list[Shot] = field(default_factory=list)
    notified: dict[str, bytes] = field(default_factory=dict)  # invoice -> notification body
    money: list[Req] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def request(self, kind: str) -> tuple[Callable[[], Awaitable[httpx.Response]], Req | None, str | None]:
        c, anon = self.stack.client, self.stack.anon
        match kind:
            case "health":
                return lambda: anon.get("/health"), None, None
            case "balances":
                return lambda: c.get("/v1/sellers/tenun/balances"), None, None
            case "order":
                return lambda: c.get(f"/v1/orders/{self.refund_invoice}"), None, None
            case "trial_balance":
                return lambda: c.get("/v1/ledger/trial-balance"), None, None
            case "payouts_list":
                return lambda: c.get("/v1/payouts", params={"seller_id": "tenun"}), None, None
            case "stranger":  # a well-formed key never seen before: checking it needs the database
                key_id = self.stack.api_key.split("_", 3)[2]
                stranger = {"Authorization": f"Bearer sl_{self.stack.platform_id}_{key_id}_{secrets.token_hex(8)}"}
                return lambda: anon.get("/v1/orders", headers=stranger), None, None
            case "seller_create":
                seller = {"seller_id": f"s-{secrets.token_hex(4)}", "name": "Toko baru"}
                return lambda: c.post("/v1/sellers", json=seller), None, None
            case "notification":
                invoice = self.pending.pop() if self.pending else next(iter(self.notified))
                body = self.notified.setdefault(invoice, notification_body(invoice, 70_000))
                return lambda: self.stack.notify(body), None, invoice
            case "order_create":
                invoice = f"INV-OUT-{secrets.token_hex(4)}"
                req = Req(kind, "/v1/orders", order_body(invoice, [("Lurik", 70_000, 1, "lurik")]))
            case "refund":
                req = Req(kind, f"/v1/orders/{self.refund_invoice}/refunds", {"amount": SMALL, "reason": "sebagian"})
            case "payout":
                req = Req(kind, "/v1/payouts", {"seller_id": "tenun", "amount": SMALL})
            case _:
                raise AssertionError(kind)
        self.money.append(req)
        return lambda: send(c, req), req, None

    async def worker(self, offset: int) -> None:
        kinds = itertools.cycle(list(OK)[offset:] + list(OK)[:offset])
        for _ in range(MAX_SHOTS_PER_WORKER):
            if self.done.is_set():
                return
            kind = next(kinds)
            call, req, invoice = self.request(kind)
            sent = self.now()
            response = await call()
            self.shots.append(Shot(kind, sent, self.now() - sent, response, req, invoice))
            await asyncio.sleep(0.01)


async def send(client: httpx.AsyncClient, req: Req) -> httpx.Response:
    return await client.post(req.path, json=req.body, headers={"Idempotency-Key": req.key})


def assert_unavailable(shot: Shot, *, as_problem: bool = True) -> None:
    """503 with Retry-After saying the database is unavailable (as problem+json with its stable code)."""
    r = shot.response
    assert r.status_code == 503, (shot.kind, r.status_code, r.text)
    assert r.headers.get("retry-after", "").isdigit(), (shot.kind, dict(r.headers))
    if shot.kind == "health":
        assert r.json()["database"]["error"] == "database_unavailable", r.text  # /health's own report
    if as_problem:
        assert r.headers["content-type"].startswith(PROBLEM_JSON), (shot.kind, r.headers["content-type"], r.text)
        assert (r.json()["code"], r.json()["status"]) == ("database_unavailable", 503), (shot.kind, r.text)


async def rows(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def assert_nothing_half_written(stack: Stack) -> None:
    """Each effect is all there or not there at all: a payout with its entry, a refund with its reservation."""
    url, platform = stack.database_url, stack.platform_id
    orphans = await rows(
        url,
        """
        SELECT p.payout_id, j.idempotency_key FROM payouts p
          FULL JOIN (SELECT * FROM journal_entries WHERE platform_id = $1 AND kind = 'payout') j
            ON j.idempotency_key = 'payout:' || p.payout_id || ':request'
         WHERE (p.platform_id = $1 OR p.platform_id IS NULL) AND (p.payout_id IS NULL OR j.entry_id IS NULL)
    """,
        platform,
    )
    assert orphans == [], orphans
    refunds = await rows(
        url,
        """
        SELECT r.refund_id, r.status, r.entry_id, j.entry_id AS journal_entry FROM refunds r
          LEFT JOIN journal_entries j ON j.platform_id = r.platform_id AND j.idempotency_key = 'refund:' || r.refund_id
         WHERE r.platform_id = $1
    """,
        platform,
    )
    for r in refunds:
        posted = r["status"] == "succeeded"
        assert (r["entry_id"] is not None, r["journal_entry"] is not None) == (posted, posted), dict(r)
    unbalanced = await rows(
        url,
        """
        SELECT o.invoice_number, o.refund_reserved, o.refunded_amount,
               coalesce(sum(r.amount) FILTER (WHERE r.status IN ('requested', 'succeeded')), 0) AS reserved,
               coalesce(sum(r.amount) FILTER (WHERE r.status = 'succeeded'), 0) AS refunded
          FROM orders o LEFT JOIN refunds r USING (platform_id, invoice_number)
         WHERE o.platform_id = $1
         GROUP BY o.invoice_number, o.refund_reserved, o.refunded_amount
        HAVING o.refund_reserved <> coalesce(sum(r.amount) FILTER (WHERE r.status IN ('requested', 'succeeded')), 0)
            OR o.refunded_amount <> coalesce(sum(r.amount) FILTER (WHERE r.status = 'succeeded'), 0)
    """,
        platform,
    )
    assert unbalanced == [], unbalanced
    await stack.assert_books_balance()


# -- the test -------------------------------------------------------------------------------------------


async def test_postgres_down_answers_503_everywhere_and_the_service_recovers_without_a_restart(
    outage: Outage,
) -> None:
    stack, pg = outage.stack, outage.pg
    await stack.create_seller("lurik")
    await stack.create_seller("tenun")
    refund_invoice = f"INV-BIG-{secrets.token_hex(3)}"
    await stack.capture(refund_invoice, [("Lurik besar", BIG, 1, "lurik")])
    funding = f"INV-FUND-{secrets.token_hex(3)}"
    await stack.capture(funding, [("Tenun besar", BIG, 1, "tenun")])
    report = await stack.settlement_csv(funding)
    header, *lines = report.splitlines()
    await stack.import_settlement("\n".join([header, *(x for x in lines if x.startswith(funding + ","))]) + "\n")
    pending = [f"INV-NTF-{i}-{secrets.token_hex(3)}" for i in range(40)]
    for invoice in pending:
        await stack.place_order(invoice, [("Lurik", 70_000, 1, "lurik")])
    before = {s: await stack.balances(s) for s in ("lurik", "tenun")}
    assert before["tenun"]["available"] == BIG - BIG // 20

    load = Load(stack, refund_invoice, list(pending))
    workers = [asyncio.create_task(load.worker(offset)) for offset in range(4)]
    try:
        await asyncio.sleep(0.4)
        # DOKU is thinking about a refund whose reservation has committed when the database goes down.
        outage.doku.hold()

        async def refund_held() -> bool:
            return bool(outage.doku.held)

        await poll(refund_held, 10.0, "no refund reached DOKU")
        t0 = load.now()
        await asyncio.to_thread(pg.stop_server)
        t1 = load.now()
        outage.doku.release()
        await asyncio.sleep(OUTAGE_S)
        t2 = load.now()
        await asyncio.to_thread(pg.start_server)
        t3 = load.now()

        recovered: dict[str, float] = {}

        async def answered_again() -> bool:
            for kind in OK:
                ok = [s for s in load.shots if s.kind == kind and s.sent >= t3 and s.response.status_code == OK[kind]]
                if ok:
                    recovered.setdefault(kind, ok[0].sent + ok[0].took - t3)
            return len(recovered) == len(OK)

        await poll(answered_again, RECOVERY_S, "the service did not recover without a restart")
        steady = load.now()
        await asyncio.sleep(0.3)
    finally:
        outage.doku.release()
        load.done.set()
        await asyncio.wait_for(asyncio.gather(*workers), 60)

    # Never a 500, never anything but the right answer or "database unavailable, retry".
    for shot in load.shots:
        if shot.response.status_code != OK[shot.kind]:
            assert_unavailable(shot, as_problem=shot.kind != "health")  # /health's shape: checked last
    # While the database was down: 503 on every endpoint, each within a second.
    down = [s for s in load.shots if s.sent >= t1 and s.sent + s.took <= t2]
    assert {s.kind for s in down} == set(OK), {s.kind for s in down}
    for shot in down:
        assert_unavailable(shot, as_problem=shot.kind != "health")
        assert shot.took <= FAST_ENOUGH_S, (shot.kind, shot.took)
    stopping = [s for s in load.shots if s.sent < t1 and s.sent + s.took > t0 and s.kind not in HELD_KINDS]
    assert all(s.took <= FAST_ENOUGH_S + (t1 - t0) for s in stopping), [(s.kind, s.took) for s in stopping]
    # Once it is back: every endpoint answers again within seconds, and keeps answering.
    assert max(recovered.values()) <= RECOVERY_S, recovered
    after = [s for s in load.shots if s.sent >= steady]
    assert after and all(s.response.status_code == OK[s.kind] for s in after), [
        (s.kind, s.response.status_code) for s in after if s.response.status_code != OK[s.kind]
    ]

    await assert_nothing_half_written(stack)
    between = await rows(
        stack.database_url,
        "SELECT key FROM idempotency_keys WHERE platform_id = $1 AND "
        "status = 'in_progress' AND cardinality(phases) > 0",
        stack.platform_id,
    )
    assert between, "the stop caught no request between two of its phases"

    # Every interrupted request, retried with its key and body, happens exactly once.
    for shot in load.shots:
        if shot.req is not None and shot.response.status_code == OK[shot.kind]:
            shot.req.final = shot.response
    interrupted = [r for r in load.money if r.final is None]
    assert {r.kind for r in interrupted} == {"order_create", "refund", "payout"}
    for req in load.money:
        first = req.final
        for _ in range(50):
            r = await send(stack.client, req)
            if r.status_code == OK[req.kind]:
                break
            assert r.status_code == 409 and r.json()["code"] == "idempotency_in_progress", r.text
            await asyncio.sleep(0.1)
        assert r.status_code == OK[req.kind], r.text
        if first is not None:  # answered before: the same bytes again
            assert r.content == first.content and r.headers.get("idempotent-replayed") == "true"
        req.final = r
    for shot in load.shots:  # DOKU delivers a notification again until it gets a 2xx
        if shot.kind == "notification" and shot.response.status_code != 200:
            assert shot.invoice is not None
            r = await stack.notify(load.notified[shot.invoice])
            assert r.status_code == 200, r.text

    url, platform = stack.database_url, stack.platform_id
    payouts = [r for r in load.money if r.kind == "payout"]
    stored = await rows(url, "SELECT payout_id FROM payouts WHERE platform_id = $1", platform)
    assert sorted(p["payout_id"] for p in stored) == sorted(r.final.json()["payout_id"] for r in payouts)  # type: ignore[union-attr]
    refunds = [r for r in load.money if r.kind == "refund"]
    refund_ids = sorted(r.final.json()["refund_id"] for r in refunds)  # type: ignore[union-attr]
    stored = await rows(url, "SELECT refund_id, status FROM refunds WHERE platform_id = $1", platform)
    assert sorted(x["refund_id"] for x in stored) == refund_ids and {x["status"] for x in stored} == {"succeeded"}
    at_doku = stack.sandbox.order(refund_invoice, client_id=CLIENT_ID).refunds
    assert sorted(x.request_id for x in at_doku) == refund_ids  # one refund per Request-Id
    assert (await stack.order(refund_invoice))["refunded_amount"] == SMALL * len(refunds)
    for req in (r for r in load.money if r.kind == "order_create"):
        invoice = req.body["invoice_number"]
        order = await stack.order(invoice)
        at_doku = [o for o in stack.sandbox.orders() if o.invoice_number == invoice]
        assert [(o.request_id, order["status"]) for o in at_doku] == [(order["doku_request_id"], "pending")]
    for invoice in load.notified:
        assert (await stack.order(invoice))["status"] == "captured"
    captures = await rows(
        url, "SELECT count(*) AS n FROM journal_entries WHERE platform_id = $1 AND kind = 'capture'", platform
    )
    assert captures[0]["n"] == 2 + len(load.notified)

    now = {s: await stack.balances(s) for s in ("lurik", "tenun")}
    assert before["tenun"]["available"] - now["tenun"]["available"] == SMALL * len(payouts)
    reversed_lurik = sum(r.final.json()["reversal"]["lurik"] for r in refunds)  # type: ignore[union-attr]
    notified_net = len(load.notified) * (70_000 - 3_500)
    assert now["lurik"]["pending"] - before["lurik"]["pending"] == notified_net - reversed_lurik
    await assert_nothing_half_written(stack)

    # Last, so that it cannot hide the checks above: /health's 503 is the same problem+json as the rest.
    for shot in load.shots:
        if shot.kind == "health" and shot.response.status_code != 200:
            assert_unavailable(shot)
