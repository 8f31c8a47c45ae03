"""What operators and integrators rely on besides the money: /health, /metrics, the OpenAPI
document, X-Request-Id on every answer, keyset pagination, seller statements (JSON and CSV) and
balances as of an earlier instant."""

from __future__ import annotations

import csv
import io
import re

from tests.api.conftest import METRICS_TOKEN, NOTIFICATION_PATH, Stack, assert_problem, notification_body, order_body

ITEMS = [("Gerabah", 40_000, 1, "kasongan")]
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def _counter(metrics: str, name: str, outcome: str) -> int:
    match = re.search(rf'^splitledger_{name}_total\{{outcome="{outcome}"\}} ([0-9.e+]+)$', metrics, re.M)
    return int(float(match.group(1))) if match else 0


async def test_health_answers_without_a_key_and_reports_the_database(stack: Stack) -> None:
    r = await stack.anon.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["database"]["ok"] is True


async def test_metrics_count_captures_and_notifications_in_prometheus_text(stack: Stack) -> None:
    await stack.create_seller("kasongan")
    await stack.place_order("INV-MET-1", ITEMS)
    before = (await stack.anon.get("/metrics", headers=SCRAPER)).text
    await stack.sandbox.approve("INV-MET-1")
    await stack.sandbox.drain()
    await stack.wait_for_status("INV-MET-1", "captured")
    await stack.sandbox.resend("INV-MET-1")
    r = await stack.anon.get("/metrics", headers=SCRAPER)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    after = r.text
    assert "# TYPE splitledger_captures_total counter" in after
    assert "# TYPE splitledger_http_requests_total counter" in after
    assert _counter(after, "captures", "captured") == _counter(before, "captures", "captured") + 1
    assert _counter(after, "captures", "duplicate") == _counter(before, "captures", "duplicate") + 1
    assert _counter(after, "notifications", "captured") == _counter(before, "notifications", "captured") + 1
    assert _counter(after, "notifications", "duplicate") == _counter(before, "notifications", "duplicate") + 1
    assert re.search(r'splitledger_http_requests_total\{method="POST",route="[^"]*",status="201"\} \d+', after)


async def test_the_openapi_document_lists_the_main_paths(stack: Stack) -> None:
    r = await stack.anon.get("/docs/openapi.json")
    assert r.status_code == 200
    paths = set(r.json()["paths"])
    assert {
        "/health",
        "/metrics",
        NOTIFICATION_PATH,
        "/v1/platform/gateway",
        "/v1/sellers",
        "/v1/sellers/{seller_id}",
        "/v1/sellers/{seller_id}/balances",
        "/v1/sellers/{seller_id}/statement",
        "/v1/orders",
        "/v1/orders/{invoice_number}",
        "/v1/orders/{invoice_number}/refunds",
        "/v1/orders/{invoice_number}/send",
        "/v1/orders/{invoice_number}/status-check",
        "/v1/refunds/{refund_id}",
        "/v1/payouts",
        "/v1/payouts/{payout_id}/confirm",
        "/v1/settlements",
        "/v1/reconciliation",
        "/v1/reconciliation/exceptions",
        "/v1/ledger/trial-balance",
        "/v1/ledger/entries/{entry_id}",
    } <= paths
    assert "post" in r.json()["paths"]["/v1/orders"]


async def test_every_answer_carries_one_x_request_id_and_a_sane_incoming_one_is_echoed(stack: Stack) -> None:
    await stack.create_seller("kasongan")
    answers = [
        await stack.anon.get("/health"),
        await stack.anon.get("/metrics", headers=SCRAPER),
        await stack.anon.get("/docs/openapi.json"),
        await stack.anon.get("/v1/orders"),  # 401
        await stack.client.get("/v1/orders"),
        await stack.client.get("/v1/orders/INV-NONE"),  # 404 from a handler
        await stack.client.get("/v1/no/such/path"),  # 404 from the router
        await stack.client.put("/v1/orders"),  # 405
        await stack.client.post("/v1/orders", content=b"{", headers={"Content-Type": "application/json"}),
        await stack.client.post("/v1/orders", json=order_body("INV-RID-1", ITEMS)),
        await stack.anon.post(NOTIFICATION_PATH, content=notification_body("INV-RID-1", 40_000)),  # 401
    ]
    assert [r.status_code for r in answers] == [200, 200, 200, 401, 200, 404, 404, 405, 400, 201, 401]
    for r in answers:
        assert len(r.headers.get_list("x-request-id")) == 1, (r.request.url, r.headers)
    assert len({r.headers["x-request-id"] for r in answers}) == len(answers)

    for path in ("/v1/orders", "/v1/orders/INV-NONE", "/v1/no/such/path"):
        r = await stack.client.get(path, headers={"X-Request-Id": "trace-abc.123"})
        assert r.headers["x-request-id"] == "trace-abc.123"
        r = await stack.client.get(path, headers={"X-Request-Id": "bad id with spaces"})
        assert r.headers["x-request-id"] != "bad id with spaces"


async def test_keyset_pagination_visits_every_order_once(stack: Stack) -> None:
    await stack.create_seller("kasongan")
    await stack.create_seller("bantul")
    invoices = [f"INV-PAGE-{n:02d}" for n in range(7)]
    for n, invoice in enumerate(invoices):
        seller = "kasongan" if n % 2 == 0 else "bantul"
        await stack.place_order(invoice, [("Gerabah", 40_000 + n, 1, seller)])
    await stack.sandbox.approve("INV-PAGE-03")
    await stack.sandbox.drain()
    await stack.wait_for_status("INV-PAGE-03", "captured")

    async def walk(limit: int, **filters: str) -> tuple[list[str], int]:
        seen: list[str] = []
        cursor, pages = None, 0
        while True:
            # Pasted into the URL as it came, the way many clients do: the cursor must be URL-safe.
            query = "&".join(f"{k}={v}" for k, v in {"limit": limit, **filters}.items())
            r = await stack.client.get(f"/v1/orders?{query}" + (f"&cursor={cursor}" if cursor else ""))
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= limit
            seen += [o["invoice_number"] for o in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                return seen, pages

    assert await walk(3) == (invoices, 3)
    assert await walk(7) == (invoices, 1)
    assert await walk(1) == (invoices, 7)
    assert await walk(2, seller_id="kasongan") == (invoices[0::2], 2)
    assert await walk(2, status="pending") == ([i for i in invoices if i != "INV-PAGE-03"], 3)
    assert await walk(5, status="captured") == (["INV-PAGE-03"], 1)


async def test_keyset_pagination_visits_every_payout_once(stack: Stack) -> None:
    await stack.create_seller("kasongan")
    await stack.capture("INV-PO-1", ITEMS)
    await stack.import_settlement(await stack.settlement_csv("INV-PO-1"))
    made = []
    for amount in (1_000, 2_000, 3_000, 4_000, 5_000):
        r = await stack.client.post("/v1/payouts", json={"seller_id": "kasongan", "amount": amount})
        made.append(r.json()["payout_id"])
    seen, cursor = [], None
    while True:
        r = await stack.client.get("/v1/payouts", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += [p["payout_id"] for p in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == made


async def test_seller_statement_json_and_csv_agree_and_run_to_payable(stack: Stack) -> None:
    await stack.create_seller("kasongan")
    await stack.capture("INV-ST-1", ITEMS)  # net 38 000
    r = await stack.client.post("/v1/orders/INV-ST-1/refunds", json={"amount": 10_000, "reason": "chipped"})
    refund = r.json()
    await stack.import_settlement(await stack.settlement_csv("INV-ST-1"))
    r = await stack.client.post("/v1/payouts", json={"seller_id": "kasongan", "amount": 5_000, "status": "paid"})
    payout = r.json()
    balances = await stack.balances("kasongan")
    assert balances["payable"] == 38_000 - refund["reversal"]["kasongan"] - 5_000

    statement = (await stack.client.get("/v1/sellers/kasongan/statement")).json()
    lines = statement["lines"]
    assert [(x["kind"], x["account"]) for x in lines] == [
        ("capture", "pending"),
        ("refund", "pending"),
        ("settlement", "pending"),
        ("settlement", "available"),
        ("payout", "available"),
    ]
    assert [x["change"] for x in lines] == [38_000, -refund["reversal"]["kasongan"], -(38_000 - 9_500), 28_500, -5_000]
    assert lines[-1]["balance"] == balances["payable"]
    running = 0
    for line in lines:
        running += line["change"]
        assert line["balance"] == running
    assert lines[1]["refund_id"] == refund["refund_id"] and lines[4]["payout_id"] == payout["payout_id"]
    assert {line["invoice_number"] for line in lines[:4]} == {"INV-ST-1"}

    paged = (await stack.client.get("/v1/sellers/kasongan/statement", params={"limit": 2})).json()
    assert [x["posting_id"] for x in paged["lines"]] == [x["posting_id"] for x in lines[:2]]
    rest = (
        await stack.client.get("/v1/sellers/kasongan/statement", params={"limit": 10, "cursor": paged["next_cursor"]})
    ).json()
    assert [x["posting_id"] for x in paged["lines"] + rest["lines"]] == [x["posting_id"] for x in lines]

    r = await stack.client.get("/v1/sellers/kasongan/statement", params={"format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["kind"], int(row["change"]), int(row["balance"])) for row in rows] == [
        (x["kind"], x["change"], x["balance"]) for x in lines
    ]
    assert sum(int(row["change"]) for row in rows) == balances["payable"]


async def test_balances_as_of_an_earlier_instant(stack: Stack) -> None:
    await stack.create_seller("kasongan")
    await stack.capture("INV-ASOF-1", ITEMS)
    r = await stack.client.post("/v1/orders/INV-ASOF-1/refunds", json={"amount": 20_000, "reason": "half"})
    share = r.json()["reversal"]["kasongan"]
    await stack.import_settlement(await stack.settlement_csv("INV-ASOF-1"))
    lines = (await stack.client.get("/v1/sellers/kasongan/statement")).json()["lines"]
    captured_at, refunded_at = lines[0]["at"], lines[1]["at"]

    r = await stack.client.get("/v1/sellers/kasongan/balances", params={"as_of": captured_at})
    assert r.status_code == 200, r.text
    then = r.json()
    assert (then["pending"], then["available"], then["debt"], then["payable"]) == (38_000, 0, 0, 38_000)
    then = (await stack.client.get("/v1/sellers/kasongan/balances", params={"as_of": refunded_at})).json()
    assert (then["pending"], then["available"]) == (38_000 - share, 0)
    now = await stack.balances("kasongan")
    assert (now["pending"], now["available"]) == (0, 38_000 - share)
    r = await stack.client.get("/v1/ledger/accounts/doku:clearing/balance", params={"as_of": captured_at})
    assert r.json()["balance"] == 40_000
    r = await stack.client.get("/v1/sellers/kasongan/balances", params={"as_of": "yesterday"})
    assert_problem(r, 422, "invalid_request")
