"""The operator's CSV files (pure): a seller's statement and the morning reconciliation.

Rule: amounts are plain integers of rupiah (no separators, no decimals), so a spreadsheet sums
them exactly; instants are ISO 8601, days are WIB days.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from ledger.balances import SellerStatementLine
from ledger.calendar import wib_day
from ledger.reconciliation import Reconciliation

STATEMENT_COLUMNS = (
    "posting_id",
    "entry_id",
    "at",
    "account",
    "kind",
    "change",
    "balance",
    "invoice_number",
    "refund_id",
    "report_id",
    "payout_id",
)


def statement_csv(lines: Iterable[SellerStatementLine]) -> str:
    """A statement as CSV, one row per line, amounts as plain integers of rupiah."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_COLUMNS)
    for line in lines:
        writer.writerow(
            (
                line.posting_id,
                line.entry_id,
                line.at.isoformat(),
                line.account,
                line.kind,
                line.change,
                line.balance,
                line.invoice_number or "",
                line.refund_id or "",
                line.report_id or "",
                line.payout_id or "",
            )
        )
    return out.getvalue()


def reconciliation_csv(rec: Reconciliation) -> str:
    """The report as a section / metric / value / detail table, amounts as integers of rupiah."""
    rows: list[tuple[object, ...]] = [
        ("report", "platform", rec.platform_id, ""),
        ("report", "period", f"{rec.period_start.isoformat()} to {rec.period_end.isoformat()}", "WIB days, inclusive"),
        ("report", "view", rec.view, "capture_date: the period's orders; settlement_date: flows by their own date"),
        ("report", "today", rec.today.isoformat(), f"settlement T+{rec.settlement_days} working days"),
        ("report", "generated_at", rec.generated_at.isoformat(), ""),
        ("result", "clean", "yes" if rec.clean else "NO", f"{len(rec.issues)} issue(s)"),
    ]
    rows += [("issue", issue.code, "", issue.message) for issue in rec.issues]
    rows += [
        ("captured in period", "orders", rec.captured.count, ""),
        ("captured in period", "gross", rec.captured.amount, ""),
        ("captured in period", "doku_fees", rec.doku_fees, "DOKU's fee on these orders"),
        ("refunded in period", "gateway_refunds", rec.refunded_gateway.count, ""),
        ("refunded in period", "gateway_amount", rec.refunded_gateway.amount, "through DOKU"),
        ("refunded in period", "manual_refunds", rec.refunded_manual.count, ""),
        ("refunded in period", "manual_amount", rec.refunded_manual.amount, "by bank transfer"),
        ("refunded in period", "deposit_refunds", rec.refunded_deposit.count, ""),
        ("refunded in period", "deposit_amount", rec.refunded_deposit.amount, "by DOKU's Refund Service"),
        ("refunded in period", "chargebacks", rec.refunded_chargeback.count, ""),
        ("refunded in period", "chargeback_amount", rec.refunded_chargeback.amount, "taken back by DOKU"),
        ("settled in period", "lines", rec.settled.lines, "DOKU's payment lines"),
        ("settled in period", "gross", rec.settled.gross, ""),
        ("settled in period", "fee", rec.settled.fee, ""),
        ("settled in period", "net", rec.settled.net, "to the bank"),
        ("owed by DOKU now", "unsettled_orders", rec.owed_by_doku.unsettled.count, ""),
        ("owed by DOKU now", "unsettled_gross", rec.owed_by_doku.unsettled.amount, ""),
        ("owed by DOKU now", "overdue_orders", rec.owed_by_doku.overdue.count, ""),
        ("owed by DOKU now", "overdue_gross", rec.owed_by_doku.overdue.amount, ""),
        (
            "owed by DOKU now",
            "doku_clearing_balance",
            rec.owed_by_doku.clearing_balance,
            "unsettled gross minus gateway refunds DOKU has not netted yet",
        ),
    ]
    rows += [
        (
            "overdue order",
            o.invoice_number,
            o.amount,
            f"captured {wib_day(o.captured_at).isoformat()}, due {o.due_on.isoformat()}, "
            f"{o.working_days_late} working day(s) late, age {o.age_working_days} working day(s)",
        )
        for o in rec.owed_by_doku.overdue_orders
    ]
    rows += [
        (f"settled {kind} lines", metric, value, "signed: a deduction is negative")
        for kind, totals in rec.settled_by_type.items()
        for metric, value in (
            ("lines", totals.lines),
            ("gross", totals.gross),
            ("fee", totals.fee),
            ("net", totals.net),
        )
    ]
    items = rec.open_items
    rows += [("open items now", "count", items.count, ""), ("open items now", "amount", items.amount, "")]
    rows += [("open items now", kind, t.amount, f"{t.count} item(s)") for kind, t in items.by_kind.items()]
    rows += [("open items aging", b.bucket, b.amount, f"{b.count} item(s), working days") for b in items.aging]
    rows += [
        (
            "open item",
            item.kind,
            item.amount,
            "; ".join(
                part
                for part in (
                    f"invoice {item.invoice_number}",
                    f"refund {item.refund_id}" if item.refund_id else "",
                    f"since {wib_day(item.since).isoformat()}",
                    f"age {item.age_working_days} working day(s)",
                    f"due {item.due_on.isoformat()}" if item.due_on else "",
                    "OVERDUE" if item.overdue else "",
                )
                if part
            ),
        )
        for item in items.items
    ]
    rows += [
        ("account now", p.account, p.balance, f"explained {p.explained}, unexplained {p.unexplained}")
        for p in rec.accounts
    ]
    rows += [("unexplained now", "total", rec.unexplained.total, "0 when every rupiah is explained")]
    rows += [
        ("unexplained", m.reason, m.amount, f"{m.account}; invoice {m.invoice_number or '(no order)'}")
        for m in rec.unexplained.by_order
    ]
    d = rec.deposit
    rows += [
        ("refund deposit now", "balance", d.balance, "doku:refund_deposit"),
        ("refund deposit now", "in_flight", d.in_flight, "deposit refunds DOKU has not confirmed"),
        ("refund deposit now", "available", d.available, ""),
        ("refund deposit", "topped_up_in_period", d.topped_up.amount, f"{d.topped_up.count} top-up(s)"),
    ]
    rows += [("open exceptions", "count", rec.open_exceptions, "")]
    rows += [
        (
            "open exception",
            exc.kind,
            exc.actual if exc.actual is not None else "",
            "; ".join(
                part
                for part in (
                    f"#{exc.exception_id}",
                    f"invoice {exc.invoice_number}" if exc.invoice_number else "",
                    f"expected {exc.expected}" if exc.expected is not None else "",
                    f"report {exc.report_id} line {exc.line_no}" if exc.report_id else f"source {exc.source}",
                    exc.message or "",
                )
                if part
            ),
        )
        for exc in rec.exceptions
    ]
    p = rec.payouts
    rows += [
        ("payouts", "pending_now", p.pending.count, ""),
        ("payouts", "pending_amount_now", p.pending.amount, ""),
        ("payouts", "in_transit_balance", p.in_transit_balance, "ledger; equals pending_amount_now when healthy"),
        ("payouts", "paid_in_period", p.paid.count, ""),
        ("payouts", "paid_amount_in_period", p.paid.amount, ""),
        ("payouts", "failed_in_period", p.failed.count, ""),
        ("payouts", "failed_amount_in_period", p.failed.amount, "returned to available"),
    ]
    s = rec.owed_to_sellers
    rows += [
        ("owed to sellers now", "allocated", s.allocated, "sellers' nets of captured orders"),
        ("owed to sellers now", "reversed_by_refunds", s.reversed, ""),
        ("owed to sellers now", "paid_out", s.paid_out, ""),
        ("owed to sellers now", "expected", s.expected, "allocated - reversed - paid out"),
        ("owed to sellers now", "ledger_pending", s.pending, ""),
        ("owed to sellers now", "ledger_available", s.available, ""),
        ("owed to sellers now", "ledger_debt", s.debt, ""),
        ("owed to sellers now", "ledger_in_transit", s.in_transit, ""),
        ("owed to sellers now", "ledger", s.ledger, "pending + available - debt + in transit"),
        ("owed to sellers now", "difference", s.difference, "ledger - expected; 0 when healthy"),
    ]
    rows += [
        ("seller difference", d.seller_id, d.difference, f"ledger {d.ledger}, expected {d.expected}") for d in s.sellers
    ]
    rows += [("ledger", "trial_balance_zero", "yes" if rec.trial_balance_zero else "NO", "")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "metric", "value", "detail"))
    writer.writerows(rows)
    return out.getvalue()
