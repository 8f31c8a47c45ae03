"""Refunds beyond the gateway path: a manual refund paid by bank transfer, and a refund after the
seller was paid out, which puts the seller into debt that the next settlement repays first."""

from __future__ import annotations

from tests.api.conftest import CLIENT_ID, COMMISSION_BPS, FEE_BPS, FEE_FIXED, Stack, assert_problem
from tests.api.expected import cart_split, proportional


def _only(report: str, invoice: str) -> str:
    """The report's header and the line of ``invoice``: DOKU's report for the day that order settles."""
    header, *rows = report.splitlines()
    mine = [row for row in rows if row.startswith(invoice + ",")]
    assert len(mine) == 1
    return "\n".join([header, *mine]) + "\n"


async def test_a_manual_refund_leaves_through_the_bank_and_never_calls_doku(stack: Stack) -> None:
    items = [("Wayang kulit", 90_000, 1, "wayang"), ("Blangkon", 37_000, 1, "blangkon")]
    split = cart_split(items, fee_bps=FEE_BPS, fee_fixed=FEE_FIXED, commission_bps=COMMISSION_BPS)
    await stack.create_seller("wayang")
    await stack.create_seller("blangkon")
    await stack.capture("INV-MAN-1", items)
    before = await stack.assert_books_balance()

    r = await stack.client.post(
        "/v1/orders/INV-MAN-1/refunds",
        json={"amount": 37_000, "reason": "blangkon out of stock", "mode": "manual", "reference": "BCA-TRF-0042"},
    )
    assert r.status_code == 201, r.text
    refund = r.json()
    assert (refund["status"], refund["mode"], refund["reference"]) == ("succeeded", "manual", "BCA-TRF-0042")
    weights = {
        "wayang": split["wayang"],
        "blangkon": split["blangkon"],
        "platform": split["platform"] + split["doku_fee"],
    }
    expected = proportional(37_000, weights)
    assert refund["reversal"] == {**expected, "doku_fee": 0}
    assert stack.sandbox.order("INV-MAN-1", client_id=CLIENT_ID).refunds == ()

    after = await stack.assert_books_balance()
    assert after["platform:bank"] == before["platform:bank"] - 37_000
    assert after["doku:clearing"] == before["doku:clearing"]  # DOKU still owes the whole order
    assert after["platform:commission"] == before["platform:commission"] - expected["platform"]
    for seller in ("wayang", "blangkon"):
        assert after[f"seller:{seller}:pending"] == split[seller] - expected[seller]
    entry = (await stack.client.get(f"/v1/ledger/entries/{refund['entry_id']}")).json()
    assert entry["kind"] == "refund" and sum(p["amount"] for p in entry["postings"]) == 0

    rec = (await stack.client.get("/v1/reconciliation")).json()
    assert rec["refunded_manual"] == {"count": 1, "amount": 37_000}
    assert rec["refunded_gateway"] == {"count": 0, "amount": 0}
    assert rec["owed_to_sellers"]["difference"] == 0


async def test_a_refund_after_payout_is_debt_and_the_next_settlement_repays_it_first(stack: Stack) -> None:
    await stack.create_seller("ulos")
    first = [("Ulos ragi hotang", 100_000, 1, "ulos")]
    split = cart_split(first, fee_bps=FEE_BPS, fee_fixed=FEE_FIXED, commission_bps=COMMISSION_BPS)
    net = split["ulos"]
    assert net == 95_000

    # Captured, settled and paid out in full: the seller holds nothing with the platform.
    await stack.capture("INV-DEBT-1", first)
    await stack.import_settlement(_only(await stack.settlement_csv("INV-DEBT-1"), "INV-DEBT-1"))
    r = await stack.client.post(
        "/v1/payouts", json={"seller_id": "ulos", "amount": net, "status": "paid", "reference": "TRF-1"}
    )
    assert r.status_code == 201 and r.json()["status"] == "paid"
    assert (await stack.balances("ulos"))["payable"] == 0

    # The customer is refunded 40 000 through DOKU: the seller's share of it is now owed by the seller.
    share = proportional(40_000, {"ulos": net, "platform": split["platform"] + split["doku_fee"]})
    r = await stack.client.post("/v1/orders/INV-DEBT-1/refunds", json={"amount": 40_000, "reason": "ripped"})
    assert r.status_code == 201 and r.json()["status"] == "succeeded"
    assert r.json()["reversal"]["ulos"] == share["ulos"] == 38_000
    balances = await stack.balances("ulos")
    assert (balances["pending"], balances["available"], balances["debt"]) == (0, 0, share["ulos"])
    assert balances["payable"] == -share["ulos"]
    await stack.assert_books_balance()
    before = await stack.trial_balance()
    r = await stack.client.post("/v1/payouts", json={"seller_id": "ulos", "amount": 1})
    assert_problem(r, 422, "payout_exceeds_available")
    assert await stack.trial_balance() == before

    # The next order is captured: pending grows, the debt stays until DOKU settles.
    second = [("Ulos sadum", 150_000, 1, "ulos")]
    net2 = cart_split(second, fee_bps=FEE_BPS, fee_fixed=FEE_FIXED, commission_bps=COMMISSION_BPS)["ulos"]
    await stack.capture("INV-DEBT-2", second)
    balances = await stack.balances("ulos")
    assert (balances["pending"], balances["debt"]) == (net2, share["ulos"])
    r = await stack.client.post("/v1/payouts", json={"seller_id": "ulos", "amount": 1})
    assert_problem(r, 422, "payout_exceeds_available")  # pending money cannot be paid out

    # Its settlement repays the debt before anything becomes available.
    summary = await stack.import_settlement(_only(await stack.settlement_csv("INV-DEBT-2"), "INV-DEBT-2"))
    assert (summary["booked"], summary["exception_count"]) == (1, 0)
    assert await stack.balances("ulos") == {
        "seller_id": "ulos",
        "pending": 0,
        "available": net2 - share["ulos"],
        "debt": 0,
        "payable": net2 - share["ulos"],
        "as_of": None,
    }
    await stack.assert_books_balance()
    statement = (await stack.client.get("/v1/sellers/ulos/statement", params={"account": "debt"})).json()
    assert [(line["kind"], line["change"]) for line in statement["lines"]] == [
        ("refund", share["ulos"]),
        ("settlement", -share["ulos"]),
    ]

    r = await stack.client.post("/v1/payouts", json={"seller_id": "ulos", "amount": net2 - share["ulos"]})
    assert r.status_code == 201, r.text
    rec = (await stack.client.get("/v1/reconciliation")).json()
    assert rec["owed_to_sellers"]["difference"] == 0
    assert rec["payouts"]["pending"] == {"count": 1, "amount": net2 - share["ulos"]}
    assert rec["payouts"]["in_transit_balance"] == net2 - share["ulos"]


async def test_a_settlement_smaller_than_the_debt_repays_what_it_can(stack: Stack) -> None:
    await stack.create_seller("ulos")
    await stack.capture("INV-BIG-1", [("Ulos", 200_000, 1, "ulos")])
    await stack.import_settlement(_only(await stack.settlement_csv("INV-BIG-1"), "INV-BIG-1"))
    r = await stack.client.post("/v1/payouts", json={"seller_id": "ulos", "amount": 190_000, "status": "paid"})
    assert r.status_code == 201
    r = await stack.client.post(
        "/v1/orders/INV-BIG-1/refunds",
        json={"amount": 200_000, "reason": "all back", "parties": {"ulos": 190_000, "platform": 10_000}},
    )
    assert r.status_code == 201, r.text
    assert (await stack.balances("ulos"))["debt"] == 190_000
    order = await stack.order("INV-BIG-1")
    assert (order["refunded_amount"], order["refundable_amount"]) == (200_000, 0)
    r = await stack.client.post("/v1/orders/INV-BIG-1/refunds", json={"amount": 1, "reason": "more"})
    assert_problem(r, 422, "refund_exceeds_captured")

    await stack.capture("INV-SMALL-1", [("Ulos kecil", 50_000, 1, "ulos")])  # net 47 500
    await stack.import_settlement(_only(await stack.settlement_csv("INV-SMALL-1"), "INV-SMALL-1"))
    balances = await stack.balances("ulos")
    assert (balances["pending"], balances["available"], balances["debt"]) == (0, 0, 190_000 - 47_500)
    await stack.assert_books_balance()
