"""The sandbox's settlement report: a day's captured orders with DOKU's fee deducted, exact to the rupiah."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jenius.client import JeniusClient
from jenius.messages import ReportColumn
from jenius.sandbox import Sandbox, SandboxMerchant
from jenius.sandbox_report import COLUMNS, fee_for, settlement_date
from tests.jenius.conftest import CLIENT_ID, SECRET_KEY, client_config, payment


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@given(gross=st.integers(min_value=0, max_value=10**12), bps=st.integers(0, 10_000), fixed=st.integers(0, 10**6))
def test_fee_and_net_add_up_to_the_gross(gross: int, bps: int, fixed: int) -> None:
    fee = fee_for(gross, fee_bps=bps, fee_fixed=fixed)
    assert 0 <= fee <= gross
    # within half a rupiah of the exact proportional fee, in integers, unless capped at the gross
    assert fee == gross or 2 * abs((fee - fixed) * 10_000 - gross * bps) <= 10_000


@pytest.mark.parametrize(
    ("gross", "bps", "fixed", "fee"),
    [(50_000, 100, 2_000, 2_500), (10_050, 100, 0, 101), (10_049, 100, 0, 100), (1_000, 0, 2_000, 1_000)],
)
def test_fee_rounds_half_up_and_never_exceeds_the_gross(gross: int, bps: int, fixed: int, fee: int) -> None:
    assert fee_for(gross, fee_bps=bps, fee_fixed=fixed) == fee


@pytest.mark.parametrize(
    ("captured", "settled"),
    [
        (date(2024, 5, 1), date(2024, 5, 3)),  # Wednesday -> Friday
        (date(2024, 5, 2), date(2024, 5, 6)),  # Thursday -> Monday
        (date(2024, 5, 3), date(2024, 5, 7)),  # Friday -> Tuesday
        (date(2024, 5, 4), date(2024, 5, 7)),  # Saturday -> Tuesday
    ],
)
def test_settlement_is_two_working_days_later(captured: date, settled: date) -> None:
    assert settlement_date(captured) == settled


async def test_the_report_lists_one_days_captures_with_fee_and_net(inbox: object, doku_server) -> None:
    # 2024-05-03 10:00 WIB = 03:00 UTC; 2024-05-03 23:30 WIB = 16:30 UTC (still the 3rd in WIB)
    clock = Clock(datetime(2024, 5, 3, 3, 0, tzinfo=UTC))
    sandbox = Sandbox(
        merchants=[SandboxMerchant(client_id=CLIENT_ID, secret_key=SECRET_KEY)],
        fee_bps=150,
        fee_fixed=1_000,
        clock=clock,
    )
    board, url = doku_server
    board.target = sandbox.app
    try:
        async with JeniusClient(client_config(url), clock=clock) as doku:
            await doku.request_payment(
                payment("INV-A", amount=100_000, report=(ReportColumn(key="order_id", value="ord_1"),)),
                request_id="r-a",
            )
            await doku.request_payment(payment("INV-B", amount=33_333, line_items=()), request_id="r-b")
            await doku.request_payment(payment("INV-C"), request_id="r-c")
            await doku.request_payment(payment("INV-D"), request_id="r-d")
            await sandbox.approve("INV-A")
            await sandbox.decline("INV-C")
            clock.now = datetime(2024, 5, 3, 16, 30, tzinfo=UTC)
            await sandbox.approve("INV-B")
            clock.now = datetime(2024, 5, 3, 17, 30, tzinfo=UTC)  # 00:30 WIB on the 4th
            await sandbox.approve("INV-D")
            await doku.refund(invoice_number="INV-A", amount=100_000, reason="x", request_id="rf")
        report = sandbox.settlement_report_csv(date(2024, 5, 3))
        async with httpx.AsyncClient(base_url=url) as http:
            served = await http.get("/_sandbox/settlements/2024-05-03.csv")
            filtered = await http.get("/_sandbox/settlements/2024-05-03.csv", params={"client_id": "MCH-other"})
            bad_name = await http.get("/_sandbox/settlements/yesterday.csv")
    finally:
        await sandbox.aclose()
    assert report.splitlines()[0] == ",".join((*COLUMNS, "order_id"))
    assert rows(report) == [
        {
            "invoice_number": "INV-A",
            "request_id": "r-a",
            "client_id": CLIENT_ID,
            "channel": "JENIUS",
            "type": "PAYMENT",
            "transaction_date": "2024-05-03T10:00:00+07:00",
            "status": "REFUNDED",
            "gross_amount": "100000",
            "fee": "2500",
            "net_amount": "97500",
            "settlement_date": "2024-05-07",
            "order_id": "ord_1",
        },
        {
            "invoice_number": "INV-B",
            "request_id": "r-b",
            "client_id": CLIENT_ID,
            "channel": "JENIUS",
            "type": "PAYMENT",
            "transaction_date": "2024-05-03T23:30:00+07:00",
            "status": "SUCCESS",
            "gross_amount": "33333",
            "fee": "1500",
            "net_amount": "31833",
            "settlement_date": "2024-05-07",
            "order_id": "",
        },
    ]
    assert (served.status_code, served.text) == (200, report)
    assert served.headers["content-type"].startswith("text/csv")
    assert rows(filtered.text) == []
    assert bad_name.status_code == 404
    # INV-A was refunded at 00:30 WIB on the 4th: DOKU deducts it from the 4th's settlement.
    fourth = rows(sandbox.settlement_report_csv(date(2024, 5, 4)))
    assert [(r["invoice_number"], r["type"]) for r in fourth] == [("INV-D", "PAYMENT"), ("INV-A", "REFUND")]
    refund_row = fourth[1]
    assert (refund_row["request_id"], refund_row["transaction_date"]) == ("rf", "2024-05-04T00:30:00+07:00")
    assert (refund_row["gross_amount"], refund_row["fee"], refund_row["net_amount"]) == ("-100000", "0", "-100000")
    assert refund_row["settlement_date"] == "2024-05-07"  # Saturday the 4th: T+2 working days


def test_an_empty_day_has_only_the_header() -> None:
    assert Sandbox().settlement_report_csv(date(2024, 1, 1) - timedelta(days=1)) == ",".join(COLUMNS) + "\n"
