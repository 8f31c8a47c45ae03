"""Every money-moving request dies at each of its phase boundaries once, and its retry with the same
Idempotency-Key still moves the money exactly once and answers what an uninterrupted request answers.

For each request: one uninterrupted run with a recording ``Faults()`` learns the boundaries it passes
(``faults.seen``) and gives the reference answer and the change it makes to every account; then, for
each boundary, on fresh resources, the boundary is armed, the request answers 500 (the "process" died
there, its key's progress kept), and the same request with the same key is sent again until it answers.
Checked for every combination: the same status, the same body apart from ids and timestamps, the same
change to every account as the reference run (so nothing is booked twice or lost), one refund or
payout per key, DOKU asked with one Request-Id only and acting once, a further retry replaying the
exact bytes, and a zero trial balance. The service runs with ``idempotency_lease_s=0`` so a crashed
execution's lease has lapsed by the time its retry arrives.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from ledger.service.faults import Faults
from tests.api.conftest import CLIENT_ID, Stack, assert_problem, notification_body, order_body, start_stack
from tests.conftest import PostgresForTests, create_test_database, drop_test_database

ITEMS = [("Lurik", 70_000, 1, "lurik")]
LURIK_NET = 70_000 - 3_500  # 5 % commission; the platform bears DOKU's fee
REFUND = 20_000
PAYOUT = 10_000
MAX_RETRIES = 20


class SentToDoku(httpx.AsyncBaseTransport):
    """The service's HTTP to DOKU, passed through to the sandbox and recorded: (kind, invoice, Request-Id)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            kind = "refund" if "refund" in request.url.path.lower() else "payment"
            invoice = msgspec.json.decode(request.content)["order"]["invoice_number"]
            self.sent.append((kind, invoice, request.headers["request-id"]))
        return await self.inner.handle_async_request(request)

    def request_ids(self, kind: str, invoice: str) -> set[str]:
        return {rid for k, inv, rid in self.sent if (k, inv) == (kind, invoice)}

    async def aclose(self) -> None:
        pass  # the service closes its DOKU clients; the recording outlives them (closed by the fixture)


@dataclass
class Env:
    stack: Stack
    faults: Faults
    doku: SentToDoku


@pytest.fixture(scope="module")
async def env(postgres: PostgresForTests, template_database: str) -> AsyncIterator[Env]:
    """One stack for the whole module (each test uses fresh orders, sellers and keys)."""
    name = await create_test_database(postgres, template_database)
    faults, doku = Faults(), SentToDoku()
    try:
        async for stack in start_stack(postgres.url(name), faults=faults, transport=doku, idempotency_lease_s=0):
            await stack.create_seller("lurik")
            yield Env(stack, faults, doku)
    finally:
        await doku.inner.aclose()
        await drop_test_database(postgres, name)


# -- the driver --------------------------------------------------------------------------------------

Send = Callable[[Any, str], Awaitable[httpx.Response]]
Check = Callable[[Any, httpx.Response, dict[str, int]], Awaitable[None]]


def stable(value: Any) -> Any:
    """An answer without what differs between runs on fresh resources: ids, invoice numbers, times, links."""
    if isinstance(value, dict):
        return {
            k: stable(v)
            for k, v in value.items()
            if not (k.endswith("_at") or (k.endswith("_id") and k != "seller_id") or k in ("invoice_number", "links"))
        }
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        a: after.get(a, 0) - before.get(a, 0)
        for a in sorted(set(before) | set(after))
        if after.get(a, 0) != before.get(a, 0)
    }


async def exercise(
    env: Env,
    prepare: Callable[[int], Awaitable[list[Any]]],
    send: Send,
    check: Check,
    *,
    must_pass: set[str],
) -> list[str]:
    """Run the request uninterrupted, then crashed at each boundary it passes and retried; returns the boundaries.

    ``prepare(n)`` makes ``n`` fresh sets of resources (one per run) at once.
    """
    stack, faults = env.stack, env.faults
    faults.armed.clear()

    (ctx,) = await prepare(1)
    before = await stack.assert_books_balance()
    faults.seen.clear()
    reference = await send(ctx, f"ref-{secrets.token_hex(6)}")
    points = list(dict.fromkeys(faults.seen))
    assert reference.status_code in (200, 201), reference.text
    moved = delta(before, await stack.assert_books_balance())
    await check(ctx, reference, moved)
    assert must_pass <= set(points), (points, must_pass)

    for point, ctx in zip(points, await prepare(len(points)), strict=True):
        before = await stack.assert_books_balance()
        key = f"crash-{point}-{secrets.token_hex(6)}"
        faults.arm(point)
        crashed = await send(ctx, key)
        assert point not in faults.armed, f"{point} was armed but never reached"
        assert_problem(crashed, 500, "internal_error")

        for _ in range(MAX_RETRIES):
            answer = await send(ctx, key)
            if answer.status_code != 409 or answer.json().get("code") != "idempotency_in_progress":
                break
        else:
            raise AssertionError(f"{point}: the key stayed in progress after {MAX_RETRIES} retries")
        where = f"crashed at {point}"
        assert answer.status_code == reference.status_code, (where, answer.text)
        assert stable(answer.json()) == stable(reference.json()), where
        assert delta(before, await stack.assert_books_balance()) == moved, where
        await check(ctx, answer, moved)

        replay = await send(ctx, key)
        assert (replay.status_code, replay.content) == (answer.status_code, answer.content), where
        assert replay.headers.get("idempotent-replayed") == "true", where
        assert delta(before, await stack.assert_books_balance()) == moved, where
    return points


async def many(n: int, one: Callable[[], Awaitable[Any]]) -> list[Any]:
    return list(await asyncio.gather(*(one() for _ in range(n))))


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def fresh_invoice(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def only(report: str, invoice: str) -> str:
    header, *rows = report.splitlines()
    mine = [row for row in rows if row.startswith(invoice + ",")]
    assert len(mine) == 1
    return "\n".join([header, *mine]) + "\n"


async def captured(stack: Stack, prefix: str) -> str:
    invoice = fresh_invoice(prefix)
    await stack.capture(invoice, ITEMS)
    return invoice


async def refunds_of(stack: Stack, invoice: str) -> list[dict]:
    r = await stack.client.get(f"/v1/orders/{invoice}/refunds")
    assert r.status_code == 200, r.text
    return r.json()


async def payouts_of(stack: Stack, seller_id: str) -> list[dict]:
    r = await stack.client.get("/v1/payouts", params={"seller_id": seller_id, "limit": 200})
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return r.json()["items"]


async def settled_seller(stack: Stack, seller_id: str, amount: int) -> None:
    """A seller with ``amount - 5 %`` available: one order captured and settled."""
    await stack.create_seller(seller_id)
    invoice = fresh_invoice(f"INV-{seller_id}")
    await stack.capture(invoice, [("Kain", amount, 1, seller_id)])
    summary = await stack.import_settlement(only(await stack.settlement_csv(invoice), invoice))
    assert summary["booked"] == 1


# -- orders ------------------------------------------------------------------------------------------


async def test_creating_an_order_sends_one_payment_request_whatever_boundary_it_dies_at(env: Env) -> None:
    stack, doku = env.stack, env.doku

    async def prepare(n: int) -> list[str]:
        return [fresh_invoice("INV-NEW") for _ in range(n)]

    async def send(invoice: str, key: str) -> httpx.Response:
        return await stack.client.post("/v1/orders", json=order_body(invoice, ITEMS), headers=keyed(key))

    async def check(invoice: str, r: httpx.Response, moved: dict[str, int]) -> None:
        order = await stack.order(invoice)
        assert (order["status"], order["doku_request_id"]) == ("pending", r.json()["doku_request_id"])
        assert doku.request_ids("payment", invoice) == {order["doku_request_id"]}
        at_doku = [o for o in stack.sandbox.orders() if o.invoice_number == invoice]
        assert [(o.request_id, o.amount, o.status) for o in at_doku] == [(order["doku_request_id"], 70_000, "PENDING")]
        assert moved == {}  # an order moves no money until it is captured

    must_pass = {"order_created:after_commit", "gateway:after_call", "finish:before_commit"}
    await exercise(env, prepare, send, check, must_pass=must_pass)


async def test_resending_an_order_after_send_failed_delivers_it_once(env: Env) -> None:
    stack, doku = env.stack, env.doku

    async def one() -> dict:
        r = await stack.client.post("/v1/orders", json=order_body(fresh_invoice("INV-RESEND"), ITEMS))
        assert (r.status_code, r.json()["status"]) == (201, "send_failed"), r.text
        return r.json()

    async def prepare(n: int) -> list[dict]:
        stack.sandbox.faults.fail_5xx_next = 3 * n  # every attempt of every first send
        sent = await many(n, one)
        assert stack.sandbox.faults.fail_5xx_next == 0
        return sent

    async def send(order: dict, key: str) -> httpx.Response:
        return await stack.client.post(f"/v1/orders/{order['invoice_number']}/send", headers=keyed(key))

    async def check(first: dict, r: httpx.Response, moved: dict[str, int]) -> None:
        invoice, request_id = first["invoice_number"], first["doku_request_id"]
        assert (r.json()["status"], r.json()["doku_request_id"]) == ("pending", request_id)
        assert doku.request_ids("payment", invoice) == {request_id}
        at_doku = [o for o in stack.sandbox.orders() if o.invoice_number == invoice]
        assert [(o.request_id, o.amount) for o in at_doku] == [(request_id, 70_000)]
        assert moved == {}

    await exercise(env, prepare, send, check, must_pass={"gateway:after_call", "finish:before_commit"})


async def test_a_status_check_captures_once_whatever_boundary_it_dies_at(env: Env) -> None:
    stack = env.stack

    async def prepare(n: int) -> list[str]:
        invoices = [fresh_invoice("INV-CHECK") for _ in range(n)]
        for invoice in invoices:
            await stack.place_order(invoice, ITEMS)
        stack.sandbox.faults.drop_notifications = 4 * n  # every notification and every resend are lost
        for invoice in invoices:
            await stack.sandbox.approve(invoice, client_id=CLIENT_ID)
        await stack.sandbox.drain()
        assert stack.sandbox.faults.drop_notifications == 0
        for invoice in invoices:
            assert (await stack.order(invoice))["status"] == "pending"
        return invoices

    async def send(invoice: str, key: str) -> httpx.Response:
        return await stack.client.post(f"/v1/orders/{invoice}/status-check", headers=keyed(key))

    async def check(invoice: str, r: httpx.Response, moved: dict[str, int]) -> None:
        assert r.json()["status"] == "captured"
        assert moved["doku:clearing"] == 70_000
        assert moved["seller:lurik:pending"] == LURIK_NET
        assert await stack.inbox(invoice) == []  # captured by the check: no notification ever arrived

    await exercise(env, prepare, send, check, must_pass={"finish:before_commit"})


# -- refunds -----------------------------------------------------------------------------------------


async def test_a_refund_through_doku_is_made_once_whatever_boundary_it_dies_at(env: Env) -> None:
    stack, doku = env.stack, env.doku

    async def prepare(n: int) -> list[str]:
        return await many(n, lambda: captured(stack, "INV-RF"))

    async def send(invoice: str, key: str) -> httpx.Response:
        return await stack.client.post(
            f"/v1/orders/{invoice}/refunds", json={"amount": REFUND, "reason": "rusak"}, headers=keyed(key)
        )

    async def check(invoice: str, r: httpx.Response, moved: dict[str, int]) -> None:
        refund = r.json()
        (stored,) = await refunds_of(stack, invoice)
        assert (stored["refund_id"], stored["status"], stored["amount"]) == (refund["refund_id"], "succeeded", REFUND)
        assert doku.request_ids("refund", invoice) == {refund["refund_id"]}
        at_doku = stack.sandbox.order(invoice, client_id=CLIENT_ID).refunds
        assert [(x.request_id, x.amount) for x in at_doku] == [(refund["refund_id"], REFUND)]
        assert (await stack.order(invoice))["refunded_amount"] == REFUND
        assert moved["doku:clearing"] == -REFUND

    await exercise(
        env,
        prepare,
        send,
        check,
        must_pass={"refund_reserved:after_commit", "gateway:after_call", "finish:before_commit"},
    )


async def test_a_manual_refund_is_booked_once_and_never_reaches_doku(env: Env) -> None:
    stack, doku = env.stack, env.doku

    async def prepare(n: int) -> list[str]:
        return await many(n, lambda: captured(stack, "INV-MAN"))

    async def send(invoice: str, key: str) -> httpx.Response:
        body = {"amount": REFUND, "reason": "stok habis", "mode": "manual", "reference": "BCA-TRF-1"}
        return await stack.client.post(f"/v1/orders/{invoice}/refunds", json=body, headers=keyed(key))

    async def check(invoice: str, r: httpx.Response, moved: dict[str, int]) -> None:
        (stored,) = await refunds_of(stack, invoice)
        assert (stored["refund_id"], stored["status"], stored["mode"]) == (r.json()["refund_id"], "succeeded", "manual")
        assert doku.request_ids("refund", invoice) == set()
        assert stack.sandbox.order(invoice, client_id=CLIENT_ID).refunds == ()
        assert (await stack.order(invoice))["refunded_amount"] == REFUND
        assert moved["platform:bank"] == -REFUND and "doku:clearing" not in moved

    await exercise(env, prepare, send, check, must_pass={"refund_reserved:after_commit", "finish:before_commit"})


async def test_retrying_a_refund_doku_did_not_confirm_refunds_once(env: Env) -> None:
    stack, doku = env.stack, env.doku

    async def one(invoice: str) -> dict:
        r = await stack.client.post(f"/v1/orders/{invoice}/refunds", json={"amount": REFUND, "reason": "rusak"})
        assert (r.status_code, r.json()["status"]) == (201, "requested"), r.text
        return r.json()

    async def prepare(n: int) -> list[dict]:
        invoices = await many(n, lambda: captured(stack, "INV-RFR"))
        stack.sandbox.faults.fail_5xx_next = 3 * n  # DOKU never confirms the first try of any of them
        refunds = list(await asyncio.gather(*(one(invoice) for invoice in invoices)))
        assert stack.sandbox.faults.fail_5xx_next == 0
        return refunds

    async def send(refund: dict, key: str) -> httpx.Response:
        return await stack.client.post(f"/v1/refunds/{refund['refund_id']}/retry", headers=keyed(key))

    async def check(first: dict, r: httpx.Response, moved: dict[str, int]) -> None:
        invoice, refund_id = first["invoice_number"], first["refund_id"]
        assert (r.json()["refund_id"], r.json()["status"]) == (refund_id, "succeeded")
        assert [x["refund_id"] for x in await refunds_of(stack, invoice)] == [refund_id]
        assert doku.request_ids("refund", invoice) == {refund_id}
        at_doku = stack.sandbox.order(invoice, client_id=CLIENT_ID).refunds
        assert [(x.request_id, x.amount) for x in at_doku] == [(refund_id, REFUND)]
        assert moved["doku:clearing"] == -REFUND

    await exercise(env, prepare, send, check, must_pass={"gateway:after_call", "finish:before_commit"})


# -- payouts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "paid"])
async def test_a_payout_is_made_once_whatever_boundary_it_dies_at(env: Env, status: str) -> None:
    stack = env.stack
    seller = f"tenun-{status}"
    await settled_seller(stack, seller, 200_000)
    made: list[str] = []  # one payout per key used so far, none from the crashed executions

    async def prepare(n: int) -> list[None]:
        return [None] * n

    async def send(_: None, key: str) -> httpx.Response:
        body = {"seller_id": seller, "amount": PAYOUT, "reference": "TRF-1", "status": status}
        return await stack.client.post("/v1/payouts", json=body, headers=keyed(key))

    async def check(_: None, r: httpx.Response, moved: dict[str, int]) -> None:
        payout = r.json()
        assert payout["payout_id"] not in made
        made.append(payout["payout_id"])
        stored = await payouts_of(stack, seller)
        assert sorted(p["payout_id"] for p in stored) == sorted(made)
        assert [(p["amount"], p["status"]) for p in stored if p["payout_id"] == payout["payout_id"]] == [
            (PAYOUT, status)
        ]
        assert moved[f"seller:{seller}:available"] == -PAYOUT
        assert ("platform:bank" in moved) is (status == "paid")

    await exercise(env, prepare, send, check, must_pass={"finish:before_commit"})


@pytest.mark.parametrize(
    ("action", "body", "final"),
    [
        ("confirm", {"reference": "BANK-OK-1"}, "paid"),
        ("fail", {"reason": "rekening ditutup"}, "failed"),
    ],
)
async def test_confirming_or_failing_a_payout_moves_it_once(env: Env, action: str, body: dict, final: str) -> None:
    stack = env.stack
    seller = f"tenun-{action}"
    await settled_seller(stack, seller, 200_000)

    async def one() -> str:
        r = await stack.client.post("/v1/payouts", json={"seller_id": seller, "amount": PAYOUT})
        assert (r.status_code, r.json()["status"]) == (201, "pending"), r.text
        return r.json()["payout_id"]

    async def prepare(n: int) -> list[str]:
        return [await one() for _ in range(n)]

    async def send(payout_id: str, key: str) -> httpx.Response:
        return await stack.client.post(f"/v1/payouts/{payout_id}/{action}", json=body, headers=keyed(key))

    async def check(payout_id: str, r: httpx.Response, moved: dict[str, int]) -> None:
        assert (r.json()["payout_id"], r.json()["status"]) == (payout_id, final)
        stored = (await stack.client.get(f"/v1/payouts/{payout_id}")).json()
        assert stored["status"] == final
        if final == "paid":
            assert moved == {"payouts:in_transit": -PAYOUT, "platform:bank": -PAYOUT}  # in transit -> bank
        else:
            assert moved == {"payouts:in_transit": -PAYOUT, f"seller:{seller}:available": PAYOUT}  # back to available

    await exercise(env, prepare, send, check, must_pass={"finish:before_commit"})


# -- settlement and reconciliation --------------------------------------------------------------------


async def test_a_settlement_report_is_booked_once_whatever_boundary_it_dies_at(env: Env) -> None:
    stack = env.stack

    async def one() -> tuple[str, str]:
        invoice = await captured(stack, "INV-SET")
        return invoice, only(await stack.settlement_csv(invoice), invoice)

    async def prepare(n: int) -> list[tuple[str, str]]:
        return await many(n, one)

    async def send(ctx: tuple[str, str], key: str) -> httpx.Response:
        return await stack.client.post(
            "/v1/settlements", content=ctx[1].encode(), headers={"Content-Type": "text/csv", **keyed(key)}
        )

    async def check(ctx: tuple[str, str], r: httpx.Response, moved: dict[str, int]) -> None:
        summary = r.json()
        assert (summary["booked"], summary["exception_count"]) == (1, 0), summary
        assert (await stack.order(ctx[0]))["settled_at"] is not None
        assert moved["seller:lurik:pending"] == -LURIK_NET and moved["seller:lurik:available"] == LURIK_NET
        report = (await stack.client.get(f"/v1/settlements/{summary['report_id']}")).json()
        assert len(report["lines"]) == 1

    await exercise(env, prepare, send, check, must_pass={"finish:before_commit"})


async def test_resolving_an_exception_is_recorded_once(env: Env) -> None:
    stack = env.stack

    async def one() -> int:
        invoice = fresh_invoice("INV-GHOST")
        r = await stack.notify(notification_body(invoice, 12_345))  # DOKU captured something we never sold
        assert r.status_code == 200, r.text
        (found,) = [e for e in await stack.exceptions() if e["invoice_number"] == invoice]
        return found["exception_id"]

    async def prepare(n: int) -> list[int]:
        return [await one() for _ in range(n)]

    async def send(exception_id: int, key: str) -> httpx.Response:
        return await stack.client.post(
            f"/v1/reconciliation/exceptions/{exception_id}/resolve",
            json={"resolution": "DOKU reversed it"},
            headers=keyed(key),
        )

    async def check(exception_id: int, r: httpx.Response, moved: dict[str, int]) -> None:
        assert r.json()["exception_id"] == exception_id and r.json()["resolved_at"] is not None
        assert r.json()["detail"]["resolution"] == "DOKU reversed it"
        assert exception_id not in [e["exception_id"] for e in await stack.exceptions()]
        assert moved == {}

    await exercise(env, prepare, send, check, must_pass={"finish:before_commit"})
