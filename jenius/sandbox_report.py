"""The simulated DOKU's settlement report: one CSV row per order captured on a given day.

Rule: every amount is an ``int`` of rupiah and ``net_amount = gross_amount - fee`` on every row;
the fee is ``round_half_up(gross * fee_bps / 10_000) + fee_fixed``, never more than the gross.

The day is a calendar day in WIB (UTC+7, DOKU's business time zone). Jenius settles T+2 working
days (Saturdays and Sundays skipped, public holidays ignored). DOKU's real report layout is
[unconfirmed]; the ledger's importer takes a column mapping, and these are the sandbox's columns::

    invoice_number    the merchant's invoice number
    request_id        Request-Id of the payment request (transaction.original_request_id)
    client_id         the merchant's DOKU Client-Id
    channel           always JENIUS
    transaction_date  capture time, ISO 8601 in WIB, e.g. 2024-05-02T10:15:00+07:00
    status            the order's status when the report is drawn (SUCCESS or REFUNDED)
    gross_amount      the order amount, whole rupiah
    fee               DOKU's fee, whole rupiah
    net_amount        gross_amount - fee
    settlement_date   YYYY-MM-DD, T+2 working days after the capture day
    <key> ...         one column per additional_info.report[] key, in first-seen order (blank when absent)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date, timedelta, timezone

import msgspec

from jenius.sandbox_model import SandboxOrder

WIB = timezone(timedelta(hours=7), "WIB")
CHANNEL = "JENIUS"
SETTLEMENT_WORKING_DAYS = 2
COLUMNS = (
    "invoice_number",
    "request_id",
    "client_id",
    "channel",
    "transaction_date",
    "status",
    "gross_amount",
    "fee",
    "net_amount",
    "settlement_date",
)


class SettlementRow(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    request_id: str
    client_id: str
    transaction_date: str
    status: str
    gross_amount: int
    fee: int
    net_amount: int
    settlement_date: date
    extra: tuple[tuple[str, str], ...] = ()


def fee_for(gross: int, *, fee_bps: int, fee_fixed: int) -> int:
    """DOKU's fee on one transaction, half-up to the rupiah, capped at the gross."""
    proportional = (gross * fee_bps + 5_000) // 10_000
    return min(gross, proportional + fee_fixed)


def settlement_date(capture_day: date, working_days: int = SETTLEMENT_WORKING_DAYS) -> date:
    day = capture_day
    remaining = working_days
    while remaining:
        day += timedelta(days=1)
        if day.weekday() < 5:
            remaining -= 1
    return day


def settlement_rows(
    orders: Iterable[SandboxOrder],
    day: date,
    *,
    fee_bps: int,
    fee_fixed: int,
    client_id: str | None = None,
    invoice_numbers: frozenset[str] | None = None,
) -> tuple[SettlementRow, ...]:
    """Rows for orders captured on ``day`` (WIB), ordered by capture time then invoice number;
    ``invoice_numbers`` narrows the report to those orders (the walkthrough uses it)."""
    captured = [
        order
        for order in orders
        if order.captured_at is not None
        and order.captured_at.astimezone(WIB).date() == day
        and (client_id is None or order.client_id == client_id)
        and (invoice_numbers is None or order.invoice_number in invoice_numbers)
    ]
    captured.sort(key=lambda order: (order.captured_at, order.invoice_number))
    rows = []
    for order in captured:
        assert order.captured_at is not None
        fee = fee_for(order.amount, fee_bps=fee_bps, fee_fixed=fee_fixed)
        rows.append(
            SettlementRow(
                invoice_number=order.invoice_number,
                request_id=order.request_id,
                client_id=order.client_id,
                transaction_date=order.captured_at.astimezone(WIB).replace(microsecond=0).isoformat(),
                status=order.status,
                gross_amount=order.amount,
                fee=fee,
                net_amount=order.amount - fee,
                settlement_date=settlement_date(day),
                extra=order.report_columns,
            )
        )
    return tuple(rows)


def render_csv(rows: Iterable[SettlementRow]) -> str:
    rows = tuple(rows)
    extra_keys: list[str] = []
    for row in rows:
        for key, _ in row.extra:
            if key not in extra_keys and key not in COLUMNS:
                extra_keys.append(key)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((*COLUMNS, *extra_keys))
    for row in rows:
        extra = dict(row.extra)
        writer.writerow(
            (
                row.invoice_number,
                row.request_id,
                row.client_id,
                CHANNEL,
                row.transaction_date,
                row.status,
                row.gross_amount,
                row.fee,
                row.net_amount,
                row.settlement_date.isoformat(),
                *(extra.get(key, "") for key in extra_keys),
            )
        )
    return out.getvalue()
