"""The whole story over real HTTP: sellers, a cart order, the customer approves in the sandbox,
DOKU's notification captures, a partial refund through DOKU, DOKU's settlement report (the payment
and DOKU's deduction of the refund) imported as CSV, a payout confirmed, and a clean reconciliation
in which every clearing, suspense and fee account is exactly zero. Every rupiah is derived in the
test from the rates (``tests.api.expected``), and the books balance after every step."""

from __future__ import annotations

from datetime import date

from tests.api.conftest import CLIENT_ID, COMMISSION_BPS, FEE_BPS, FEE_FIXED, Stack
from tests.api.expected import cart_split, proportional

BATIK, KOPI = "batik-sari", "kopi-kita"
ITEMS = [("Batik tulis", 125_000, 2, BATIK), ("Kopi Gayo 250g", 45_000, 3, KOPI)]
GROSS = 385_000
REFUND = 85_000


async def test_the_whole_story_from_cart_to_clean_reconciliation(stack: Stack) -> None:
    split = cart_split(ITEMS, fee_bps=FEE_BPS, fee_fixed=FEE_FIXED, commission_bps=COMMISSION_BPS)
    # 385 000 at 1.5 % + 1 000 = 6 775; 5 % commission on 250 000 and 135 000.
    assert split == {BATIK: 237_500, KOPI: 128_250, "platform": 12_475, "doku_fee": 6_775}
    fee, platform = split["doku_fee"], split["platform"]

    # 1. Sellers: three empty accounts each, books balanced.
    for seller in (BATIK, KOPI):
        await stack.create_seller(seller)
        assert await stack.balances(seller) == {
            "seller_id": seller,
            "pending": 0,
            "available": 0,
            "debt": 0,
            "payable": 0,
            "as_of": None,
        }
    assert set((await stack.assert_books_balance()).values()) == {0}

    # 2. The order: the split is frozen and the signed payment request reaches the sandbox; nothing is posted.
    order = await stack.place_order("INV-STORY-1", ITEMS)
    allocation = order["allocation"]
    assert (allocation["gross"], allocation["doku_fee"], allocation["platform"]) == (GROSS, fee, platform)
    assert {s["seller_id"]: s["net"] for s in allocation["sellers"]} == {BATIK: split[BATIK], KOPI: split[KOPI]}
    assert {s["seller_id"]: s["commission"] for s in allocation["sellers"]} == {BATIK: 12_500, KOPI: 6_750}
    at_doku = stack.sandbox.order("INV-STORY-1", client_id=CLIENT_ID)
    assert (at_doku.status, at_doku.amount, at_doku.request_id) == ("PENDING", GROSS, order["doku_request_id"])
    assert set((await stack.assert_books_balance()).values()) == {0}

    # 3. The customer approves in the Jenius app (sandbox control API); DOKU's notification captures.
    r = await stack.sandbox_post("/_sandbox/orders/INV-STORY-1/approve")
    assert r.status_code == 200, r.text
    await stack.sandbox.drain()
    order = await stack.wait_for_status("INV-STORY-1", "captured")
    assert order["refundable_amount"] == GROSS
    books = await stack.assert_books_balance()
    assert books["doku:clearing"] == GROSS
    assert books["doku:fees_withheld"] == fee
    assert books["platform:commission"] == platform
    assert books[f"seller:{BATIK}:pending"] == split[BATIK]
    assert books[f"seller:{KOPI}:pending"] == split[KOPI]
    entry = (await stack.client.get(order["links"]["capture_entry"])).json()
    assert entry["kind"] == "capture"
    assert sum(p["amount"] for p in entry["postings"]) == 0
    assert {p["account"]: p["amount"] for p in entry["postings"]}["doku:clearing"] == GROSS

    # 4. A partial refund through DOKU, shared in proportion to what each party kept of the order:
    #    the sellers' nets and the platform's commission (it bore DOKU's fee, which DOKU keeps).
    reversal = proportional(REFUND, {BATIK: split[BATIK], KOPI: split[KOPI], "platform": platform + fee})
    assert reversal == {BATIK: 52_435, KOPI: 28_315, "platform": 4_250}
    r = await stack.client.post("/v1/orders/INV-STORY-1/refunds", json={"amount": REFUND, "reason": "kopi returned"})
    assert r.status_code == 201, r.text
    refund = r.json()
    assert (refund["status"], refund["mode"], refund["amount"]) == ("succeeded", "gateway", REFUND)
    assert refund["reversal"] == {**reversal, "doku_fee": 0}
    assert [x.amount for x in stack.sandbox.order("INV-STORY-1", client_id=CLIENT_ID).refunds] == [REFUND]
    order = await stack.order("INV-STORY-1")
    assert (order["refunded_amount"], order["refundable_amount"]) == (REFUND, GROSS - REFUND)
    books = await stack.assert_books_balance()
    assert books["doku:clearing"] == GROSS - REFUND
    assert books["doku:fees_withheld"] == fee
    assert books["platform:commission"] == platform - reversal["platform"]
    assert books[f"seller:{BATIK}:pending"] == split[BATIK] - reversal[BATIK]
    assert books[f"seller:{KOPI}:pending"] == split[KOPI] - reversal[KOPI]

    # 5. DOKU settles the full order and deducts the refund it paid (the sandbox's report has both rows);
    #    its CSV report is imported as text/csv.
    report = await stack.settlement_csv("INV-STORY-1")
    header, *rows = report.splitlines()
    assert len(rows) == 2
    line, deduction = (dict(zip(header.split(","), row.split(","), strict=True)) for row in rows)
    assert line["type"] == "PAYMENT"
    assert (int(line["gross_amount"]), int(line["fee"]), int(line["net_amount"])) == (GROSS, fee, GROSS - fee)
    assert deduction["type"] == "REFUND" and deduction["request_id"] == refund["refund_id"]
    assert (int(deduction["gross_amount"]), int(deduction["fee"]), int(deduction["net_amount"])) == (
        -REFUND,
        0,
        -REFUND,
    )
    summary = await stack.import_settlement(report)
    assert (summary["lines"], summary["booked"], summary["exception_count"]) == (2, 2, 0)
    assert (summary["gross"], summary["fee"], summary["net"]) == (GROSS - REFUND, fee, GROSS - fee - REFUND)
    assert summary["by_type"] == {
        "payment": {"lines": 1, "booked": 1, "net": GROSS - fee},
        "refund": {"lines": 1, "booked": 1, "net": -REFUND},
    }
    books = await stack.assert_books_balance()
    assert books["platform:bank"] == GROSS - fee - REFUND  # what DOKU transferred
    for account in ("doku:clearing", "doku:fees_withheld", "doku:suspense", "doku:deposit_refunds_in_flight"):
        assert books[account] == 0, account
    r = await stack.client.get(f"/v1/refunds/{refund['refund_id']}")
    assert r.json()["cleared_by"] == f"report {summary['report_id']} line 2" and r.json()["cleared_at"]
    batik_left, kopi_left = split[BATIK] - reversal[BATIK], split[KOPI] - reversal[KOPI]
    assert await stack.balances(BATIK) == {
        "seller_id": BATIK,
        "pending": 0,
        "available": batik_left,
        "debt": 0,
        "payable": batik_left,
        "as_of": None,
    }
    assert (await stack.balances(KOPI))["available"] == kopi_left
    again = await stack.import_settlement(report)  # the same bytes: imported once
    assert again["already_imported"] is True
    assert await stack.accounts() == books

    # 6. batik-sari is paid everything available; the bank confirms.
    r = await stack.client.post("/v1/payouts", json={"seller_id": BATIK, "amount": batik_left})
    assert r.status_code == 201, r.text
    payout = r.json()
    assert payout["status"] == "pending"
    books = await stack.assert_books_balance()
    assert (books[f"seller:{BATIK}:available"], books["payouts:in_transit"]) == (0, batik_left)
    r = await stack.client.post(f"/v1/payouts/{payout['payout_id']}/confirm", json={"reference": "BCA-778812"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reference"]) == ("paid", "BCA-778812")
    books = await stack.assert_books_balance()
    assert books["payouts:in_transit"] == 0
    assert books["platform:bank"] == GROSS - fee - REFUND - batik_left

    # 7. Reconciliation over the capture day to the settlement day: clean, and its figures are ours.
    captured_on = date.fromisoformat(line["transaction_date"][:10])
    r = await stack.client.get(
        "/v1/reconciliation", params={"period_start": captured_on.isoformat(), "period_end": line["settlement_date"]}
    )
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["issues"] == [] and rec["clean"] is True and rec["trial_balance_zero"] is True
    assert rec["captured"] == {"count": 1, "amount": GROSS}
    assert rec["doku_fees"] == fee
    assert rec["refunded_gateway"] == {"count": 1, "amount": REFUND}
    assert rec["refunded_manual"] == {"count": 0, "amount": 0}
    assert rec["settled"] == {"lines": 1, "gross": GROSS, "fee": fee, "net": GROSS - fee}
    assert rec["settled_by_type"]["refund"] == {"lines": 1, "gross": -REFUND, "fee": 0, "net": -REFUND}
    assert rec["owed_by_doku"]["unsettled"] == {"count": 0, "amount": 0}
    assert rec["owed_by_doku"]["clearing_balance"] == 0  # DOKU deducted the refund: the books close
    assert rec["open_items"]["count"] == 0 and rec["unexplained"]["total"] == 0
    assert {p["account"]: (p["balance"], p["unexplained"]) for p in rec["accounts"]} == {
        "doku:clearing": (0, 0),
        "doku:suspense": (0, 0),
        "doku:fees_withheld": (0, 0),
        "doku:deposit_refunds_in_flight": (0, 0),
    }
    assert rec["open_exceptions"] == 0
    assert rec["payouts"]["paid"] == {"count": 1, "amount": batik_left}
    owed = rec["owed_to_sellers"]
    assert owed["expected"] == owed["ledger"] == kopi_left
    assert owed["difference"] == 0
    assert (owed["allocated"], owed["reversed"], owed["paid_out"]) == (
        split[BATIK] + split[KOPI],
        reversal[BATIK] + reversal[KOPI],
        batik_left,
    )
    r = await stack.client.get(
        "/v1/reconciliation",
        params={"period_start": captured_on.isoformat(), "period_end": line["settlement_date"], "format": "csv"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert str(GROSS) in r.text and str(kopi_left) in r.text
