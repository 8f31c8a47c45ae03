"""``splitledger demo``: one order's story from payment to payout, told against the DOKU sandbox.

It starts the real service (embedded PostgreSQL unless DATABASE_URL is set) and the simulated DOKU
on loopback, then does over HTTP exactly what a marketplace would: a platform and two sellers, a
webhook receiver registered for every event (a tiny one on loopback that checks each delivery's
signature and prints it as it arrives), a cart order split between them, the customer approving in
the (simulated) Jenius app, DOKU's signed notification and the capture (learnt from the webhook,
not by polling), the customer returning the coffee (a refund of that line item, taken only from the
coffee seller and the platform's commission on it), DOKU's settlement report (the payment, and
DOKU's deduction of the refund it paid) imported, a payout, and the morning reconciliation, whose
clearing, suspense and fee accounts are back at zero — printing the balances at each step, and at
the end the feed every event came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import msgspec

from api.app import create_app
from api.database import resolve_database_url
from api.keyring import key_file_environment
from api.serving import serve_app
from api.settings import load_settings
from jenius.sandbox import Sandbox, SandboxMerchant, serve_sandbox
from ledger import webhooks
from ledger.service.platforms import create_platform
from ledger.store import Database
from ledger.store.database import create_pool
from migrations.runner import migrate_url

WIB = timezone(timedelta(hours=7), "WIB")
FEE_BPS = 150  # the sandbox's DOKU fee: 1.5 % + Rp 1.000 (DOKU's real Jenius fee is not published)
FEE_FIXED = 1_000


def rupiah(amount: int) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}Rp {abs(amount):,}".replace(",", ".")


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return (
            "  │ "
            + " │ ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
            + " │"
        )

    rule = "  ├─" + "─┼─".join("─" * w for w in widths) + "─┤"
    top = "  ┌─" + "─┬─".join("─" * w for w in widths) + "─┐"
    bottom = "  └─" + "─┴─".join("─" * w for w in widths) + "─┘"
    return "\n".join([f"\n  {title}", top, line(cells[0]), rule, *(line(r) for r in cells[1:]), bottom])


def say(step: int | None, text: str) -> None:
    prefix = f"\n[{step}] " if step is not None else "    "
    print(prefix + text, flush=True)


class DemoReceiver:
    """The marketplace's webhook receiver on loopback: checks each delivery's signature, prints it."""

    def __init__(self) -> None:
        self.secret = ""
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._arrived = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hooks"

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            signature = headers.get(webhooks.SIGNATURE_HEADER.lower(), "")
            ok = webhooks.verify_signature(self.secret, signature, body, now=int(time.time()))
            status = "204 No Content" if ok else "400 Bad Request"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return
        finally:
            writer.close()
        if not ok:
            self.bad_signatures += 1
            return
        event = msgspec.json.decode(body)
        if any(seen["id"] == event["id"] for seen in self.events):
            return  # at least once: an event id already handled is skipped
        self.events.append(event)
        say(None, f"  ⇢ webhook {event['type']:<34} {resource_of(event):<24} (signature ✓)")
        self._arrived.set()

    async def wait_for(self, type_: str, invoice: str, timeout_s: float = 10.0) -> dict[str, Any] | None:
        def found() -> dict[str, Any] | None:
            return next(
                (e for e in self.events if e["type"] == type_ and e["data"].get("invoice_number") == invoice), None
            )

        await self._until(lambda: found() is not None, timeout_s)
        return found()

    async def wait_for_all(self, ids: set[str], timeout_s: float) -> None:
        await self._until(lambda: ids <= {e["id"] for e in self.events}, timeout_s)

    async def _until(self, done: Callable[[], bool], timeout_s: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not done():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)


def resource_of(event: dict[str, Any]) -> str:
    data = event["data"]
    for key in ("invoice_number", "payout_id", "report_id", "exception_id", "id"):
        if key in data:
            return str(data[key])[:24]
    return ""


class Story:
    def __init__(
        self, client: httpx.AsyncClient, sandbox_url: str, sellers: list[str], receiver: DemoReceiver | None = None
    ) -> None:
        self.client = client
        self.sandbox_url = sandbox_url
        self.sellers = sellers
        self.receiver = receiver or DemoReceiver()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.headers.get("content-type", "").startswith("application/") else response.text

    async def balances(self, title: str) -> None:
        rows = []
        for seller_id in self.sellers:
            b = await self.call("GET", f"/v1/sellers/{seller_id}/balances")
            rows.append([seller_id, rupiah(b["pending"]), rupiah(b["available"]), rupiah(b["debt"])])
        tb = await self.call("GET", "/v1/ledger/trial-balance")
        platform = {line["account"]: line["balance"] for line in tb["lines"]}
        print(table(title, ["seller", "pending", "available", "debt"], rows))
        print(
            table(
                "platform accounts",
                ["account", "balance"],
                [
                    [code, rupiah(platform.get(code, 0))]
                    for code in (
                        "doku:clearing",
                        "doku:fees_withheld",
                        "doku:suspense",
                        "platform:commission",
                        "platform:bank",
                        "payouts:in_transit",
                    )
                ],
            )
        )
        totals = tb["totals"].get("IDR", 0)
        say(None, f"trial balance: debits − credits = {rupiah(totals)} {'✓' if totals == 0 else '✗'}")

    async def wait_for(self, invoice: str, status: str, timeout_s: float = 10.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            order: dict[str, Any] = await self.call("GET", f"/v1/orders/{invoice}")
            if order["status"] == status or asyncio.get_running_loop().time() > deadline:
                return order
            await asyncio.sleep(0.05)


async def tell(story: Story, *, platform_id: str, api_key: str, base_url: str, client_id: str) -> bool:
    invoice = f"INV-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3).upper()}"
    say(1, f"Platform {platform_id} created; its API key is printed once:\n    {api_key}")

    say(
        2,
        "The platform registers its DOKU merchant account: fee 1.5 % + Rp 1.000 borne by the platform, commission 5 %",
    )
    await story.call(
        "PUT",
        "/v1/platform/gateway",
        json={
            "client_id": client_id,
            "secret_key": "SK-demo-secret",
            "fee_bps": FEE_BPS,
            "fee_fixed": FEE_FIXED,
            "fee_bearer": "platform",
            "commission_bps": 500,
        },
    )

    url = await story.receiver.start()
    endpoint = await story.call("POST", "/v1/webhook-endpoints", json={"url": url, "events": ["*"]})
    story.receiver.secret = endpoint["secret"]
    say(
        None,
        f"and a webhook endpoint for every event: {endpoint['id']} → {url} "
        "(its signing secret is shown in this answer only)",
    )

    say(3, "Two sellers join: batik-sari (default 5 %) and kopi-kita (negotiated 3 %)")
    await story.call("POST", "/v1/sellers", json={"seller_id": "batik-sari", "name": "Batik Sari"})
    await story.call("POST", "/v1/sellers", json={"seller_id": "kopi-kita", "name": "Kopi Kita", "commission_bps": 300})

    say(4, f"A customer checks out a cart: order {invoice}")
    order = await story.call(
        "POST",
        "/v1/orders",
        headers={"Idempotency-Key": f"order-{invoice}"},
        json={
            "invoice_number": invoice,
            "amount": 385_000,
            "line_items": [
                {"name": "Batik tulis", "price": 150_000, "quantity": 2, "seller_id": "batik-sari"},
                {"name": "Kopi Gayo 250 g", "price": 85_000, "quantity": 1, "seller_id": "kopi-kita"},
            ],
            "customer": {"name": "Astari", "email": "astari@example.com", "phone": "081288910205"},
            "redirect_url": "https://toko.example/return",
            "cash_tag": "$astari",
        },
    )
    alloc = order["allocation"]
    rows = [
        [s["seller_id"], rupiah(s["subtotal"]), rupiah(s["commission"]), rupiah(s["net"])] for s in alloc["sellers"]
    ]
    rows.append(["platform (commission − DOKU fee)", "", "", rupiah(alloc["platform"])])
    rows.append(["DOKU fee", "", "", rupiah(alloc["doku_fee"])])
    rows.append(
        ["total", "", "", rupiah(sum(s["net"] for s in alloc["sellers"]) + alloc["platform"] + alloc["doku_fee"])]
    )
    print(table(f"frozen allocation of {rupiah(alloc['gross'])}", ["party", "items", "commission", "share"], rows))
    say(None, f"signed payment request sent to DOKU (Request-Id {order['doku_request_id']}); status: {order['status']}")

    say(5, "The customer approves in the Jenius app; DOKU sends its signed notification")
    await story.call("POST", f"{story.sandbox_url}/_sandbox/orders/{invoice}/approve")
    captured = await story.receiver.wait_for("order.captured", invoice)
    order = captured["data"] if captured is not None else await story.wait_for(invoice, "captured")
    say(None, "the platform learnt of the capture from its webhook, without polling" if captured else "(polled)")
    entry_path = order["links"]["capture_entry"]
    entry = await story.call("GET", entry_path)
    print(
        table(
            f"capture: journal entry #{entry['entry_id']} (debit +, credit −)",
            ["account", "amount"],
            [[p["account"], rupiah(p["amount"])] for p in entry["postings"]],
        )
    )
    await story.balances("seller balances after capture")

    say(6, "The customer returns the coffee: a refund of that line item (Rp 85.000) through DOKU")
    refund = await story.call(
        "POST",
        f"/v1/orders/{invoice}/refunds",
        headers={"Idempotency-Key": f"refund-{invoice}"},
        json={
            "line_items": [{"name": "Kopi Gayo 250 g", "quantity": 1}],
            "reason": "item returned",
            "mode": "gateway",
        },
    )
    print(
        table(
            f"refund {refund['refund_id']}: {refund['status']}, reversed per party",
            ["party", "reversed"],
            [[party, rupiah(amount)] for party, amount in (refund["reversal"] or {}).items()],
        )
    )
    await story.balances("seller balances after the refund")

    say(7, "Two working days later DOKU settles; its settlement report is imported")
    today = datetime.now(WIB).date()
    report = await story.call("GET", f"{story.sandbox_url}/_sandbox/settlements/{today.isoformat()}.csv")
    print("\n" + "\n".join("    " + line for line in report.strip().splitlines()[:4]))
    summary = await story.call(
        "POST",
        "/v1/settlements",
        content=report.encode(),
        headers={"Content-Type": "text/csv", "X-Source-Name": f"doku-{today}.csv"},
    )
    kinds = ", ".join(f"{t['booked']} {kind}" for kind, t in summary.get("by_type", {}).items())
    say(
        None,
        f"report {summary['report_id']}: {summary['booked']} line(s) booked ({kinds}), "
        f"{summary['exception_count']} exception(s), net {rupiah(summary['net'])} to the platform's bank",
    )
    say(
        None,
        "DOKU settled the whole order and deducted the refund it paid the customer: doku:clearing and "
        "doku:fees_withheld are back at Rp 0",
    )
    await story.balances("seller balances after settlement")

    say(8, "The platform pays batik-sari out")
    batik = await story.call("GET", "/v1/sellers/batik-sari/balances")
    payout = await story.call(
        "POST",
        "/v1/payouts",
        headers={"Idempotency-Key": f"payout-{invoice}"},
        json={"seller_id": "batik-sari", "amount": batik["available"], "reference": "BCA-TRX-001"},
    )
    payout = await story.call(
        "POST",
        f"/v1/payouts/{payout['payout_id']}/confirm",
        headers={"Idempotency-Key": f"confirm-{invoice}"},
        json={"reference": "BCA-TRX-001"},
    )
    say(None, f"payout {payout['payout_id']}: {rupiah(payout['amount'])} {payout['status']}")
    await story.balances("seller balances after the payout")

    say(9, "The morning reconciliation")
    rec = await story.call(
        "GET", "/v1/reconciliation", params={"period_start": today.isoformat(), "period_end": today.isoformat()}
    )
    print(reconciliation_table(rec))
    clean = bool(rec.get("clean"))
    say(
        None,
        "clean: every rupiah in the clearing, suspense and fee accounts is explained by an open item, "
        "and sellers' balances match the books ✓"
        if clean
        else "NOT clean: " + "; ".join(i.get("message", str(i)) for i in rec.get("issues", [])),
    )
    delivered = await all_delivered(story)
    say(None, f"explore: {base_url}/docs   (Authorization: Bearer <the key above>)")
    return clean and delivered


async def all_delivered(story: Story, timeout_s: float = 15.0) -> bool:
    """Every event of the feed arrived at the receiver, each signature valid."""
    say(10, "Every event the platform was sent, as its feed lists them (GET /v1/events, in commit order)")
    feed: list[dict[str, Any]] = []
    cursor = "0"
    while True:
        page = await story.call("GET", "/v1/events", params={"after": cursor, "limit": 100})
        feed += page["data"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    ids = {e["id"] for e in feed}
    await story.receiver.wait_for_all(ids, timeout_s)
    received = {e["id"] for e in story.receiver.events}
    print(
        table(
            f"{len(feed)} events",
            ["#", "type", "resource", "webhook"],
            [[n, e["type"], resource_of(e), "✓" if e["id"] in received else "✗"] for n, e in enumerate(feed, start=1)],
        )
    )
    ok = ids <= received and story.receiver.bad_signatures == 0
    say(
        None,
        f"webhooks: {len(ids & received)} of {len(ids)} events delivered, every signature valid ✓"
        if ok
        else f"webhooks: {len(ids & received)} of {len(ids)} delivered, {story.receiver.bad_signatures} bad signatures",
    )
    return ok


def reconciliation_table(rec: dict[str, Any]) -> str:
    """The headline figures an operator reads first."""
    owed = rec["owed_by_doku"]
    sellers = rec["owed_to_sellers"]
    return table(
        f"reconciliation {rec['period_start']} … {rec['period_end']} (WIB)",
        ["figure", "value"],
        [
            ["captured", f"{rec['captured']['count']} order(s), {rupiah(rec['captured']['amount'])}"],
            ["DOKU fees on them", rupiah(rec["doku_fees"])],
            ["refunded through DOKU", rupiah(rec["refunded_gateway"]["amount"])],
            ["refunded by bank transfer", rupiah(rec["refunded_manual"]["amount"])],
            [
                "still unsettled by DOKU",
                f"{owed['unsettled']['count']} order(s), {rupiah(owed['unsettled']['amount'])}",
            ],
            ["of which overdue (> T+2)", f"{owed['overdue']['count']} order(s), {rupiah(owed['overdue']['amount'])}"],
            ["doku:clearing balance", rupiah(owed["clearing_balance"])],
            [
                "open items (awaiting DOKU)",
                f"{rec['open_items']['count']} item(s), {rupiah(rec['open_items']['amount'])}",
            ],
            ["unexplained money", rupiah(rec["unexplained"]["total"])],
            ["open exceptions", str(rec["open_exceptions"])],
            ["paid out to sellers", rupiah(rec["payouts"]["paid"]["amount"])],
            ["owed to sellers (orders)", rupiah(sellers["expected"])],
            ["owed to sellers (ledger)", rupiah(sellers["ledger"])],
            ["difference", rupiah(sellers["difference"])],
            ["trial balance zero", "yes" if rec["trial_balance_zero"] else "NO"],
        ],
    )


async def run_demo(
    *, port: int = 0, sandbox_port: int = 0, keep_running: bool = False, env_file: str | None = None
) -> int:
    """The story; Ctrl-C or SIGTERM stop the service, the sandbox and the embedded PostgreSQL (130/143)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        if not received:  # a second Ctrl-C must not interrupt the shutdown the first one started
            received.append(signum)
            print("\nstopping the service, the sandbox and the embedded PostgreSQL …", flush=True)
            main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await _run_demo(port=port, sandbox_port=sandbox_port, keep_running=keep_running, env_file=env_file)
    except asyncio.CancelledError:
        if not received:
            raise
        print("stopped", flush=True)
        return 130 if received[0] == signal.SIGINT else 143
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def write_env_file(path: str, values: dict[str, str]) -> None:
    """``export NAME=value`` lines a shell can ``source`` (the README's walkthrough does)."""
    Path(path).write_text("".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items()))


async def _run_demo(*, port: int, sandbox_port: int, keep_running: bool, env_file: str | None) -> int:
    print("splitledger demo — one order from payment to payout, against a simulated DOKU\n")
    url, embedded = resolve_database_url()
    print(f"PostgreSQL: {'embedded' if embedded else 'DATABASE_URL'}")
    try:
        await migrate_url(url)
        sandbox = Sandbox(fee_bps=FEE_BPS, fee_fixed=FEE_FIXED, retry_schedule_s=(1, 5, 30))
        async with serve_sandbox(sandbox, port=sandbox_port) as sandbox_url:
            settings = load_settings(
                database_url=url,
                doku_base_url=sandbox_url,
                doku_allow_loopback_http=True,  # the simulated DOKU is plain http on loopback
                # the embedded database's key file (made on first use), unless a key is configured
                secrets_key_file=key_file_environment(embedded).get("SPLITLEDGER_SECRETS_KEY_FILE"),
                log_json=False,
                auto_migrate=False,
                status_check_enabled=False,
                webhooks_allow_loopback=True,  # the demo's receiver listens on loopback
            )
            app = create_app(settings)
            for name in ("splitledger", "httpx", "uvicorn", "uvicorn.error"):
                logging.getLogger(name).setLevel(logging.WARNING)
            async with serve_app(app, port=port) as base_url:
                print(f"DOKU sandbox:  {sandbox_url}")
                print(f"splitledger:   {base_url}  (OpenAPI docs at {base_url}/docs)")
                client_id = f"MCH-DEMO-{secrets.token_hex(4).upper()}"
                sandbox.add_merchant(
                    SandboxMerchant(
                        client_id=client_id,
                        secret_key="SK-demo-secret",
                        notification_url=base_url + settings.notification_path,
                    )
                )
                pool = await create_pool(url, min_size=1, max_size=2)
                try:
                    platform_id, api_key = await create_platform(Database(pool), "Toko Nusantara")
                finally:
                    await pool.close()
                async with httpx.AsyncClient(
                    base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {api_key}"}
                ) as client:
                    story = Story(client, sandbox_url, ["batik-sari", "kopi-kita"])
                    try:
                        clean = await tell(
                            story, platform_id=platform_id, api_key=api_key, base_url=base_url, client_id=client_id
                        )
                    finally:
                        if not keep_running:
                            await story.receiver.aclose()
                if keep_running:
                    await keep_serving(
                        env_file,
                        {
                            "API": base_url,
                            "KEY": api_key,
                            "SANDBOX": sandbox_url,
                            "CLIENT_ID": client_id,
                            "PLATFORM": platform_id,
                        },
                    )
                await sandbox.aclose()
        return 0 if clean else 1
    finally:
        if embedded is not None:
            embedded.stop()


async def keep_serving(env_file: str | None, values: dict[str, str]) -> None:
    """Serve until cancelled (Ctrl-C, SIGTERM), with the values the README's walkthrough needs."""
    print("\nThe service and the sandbox keep running; Ctrl-C stops them. For the README's walkthrough:")
    for name, value in values.items():
        print(f"  export {name}={shlex.quote(value)}")
    if env_file:
        write_env_file(env_file, values)
        print(f"  (also in {env_file}: source {env_file})")
    print(f'  curl -H "Authorization: Bearer $KEY" {values["API"]}/v1/sellers/batik-sari/balances', flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        if env_file:  # a stale file would point at a stack that is gone
            Path(env_file).unlink(missing_ok=True)  # noqa: ASYNC240 - on the way out, nothing else runs


if __name__ == "__main__":
    sys.exit(asyncio.run(run_demo()))
