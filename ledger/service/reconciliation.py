"""The morning reconciliation: every figure read in one REPEATABLE READ snapshot, then compared.

Rule: read-only. The snapshot makes the figures agree with each other (nothing committed between
two reads can make the ledger and the orders look different); what they mean is
``ledger.reconciliation``. Each order's share of the clearing, suspense and fee accounts (every
posting of those accounts) is read only when the open items leave something unexplained.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime

from ledger import chart
from ledger.calendar import WIB, wib_period
from ledger.reconciliation import (
    Figures,
    Reconciliation,
    Settled,
    View,
    build_reconciliation,
    open_items,
    positions,
)
from ledger.store.database import Database, UnitOfWork


async def reconcile(
    db: Database,
    platform_id: str,
    *,
    period_start: date,
    period_end: date,
    settlement_days: int = 2,
    today: date | None = None,
    holidays: Collection[date] = (),
    view: View = "capture_date",
) -> Reconciliation:
    """Reconcile one platform: flows in WIB days ``period_start``..``period_end`` (by ``view``), positions now."""
    today = today or datetime.now(WIB).date()
    start, end = wib_period(period_start, period_end)

    async def read(uow: UnitOfWork) -> Figures:
        reports = uow.reports
        captured, doku_fees = await reports.captured(platform_id, start, end)
        refunds = await reports.refunds_by_mode(platform_id, start, end, view)
        by_type = await reports.settled_by_type(platform_id, period_start, period_end, start, end, view)
        settled = by_type.get("payment", Settled(lines=0, gross=0, fee=0, net=0))
        unsettled = await reports.unsettled_orders(platform_id)
        uncleared = await reports.uncleared_refunds(platform_id)
        codes = [*chart.CLEARING_ACCOUNTS, chart.REFUND_DEPOSIT]
        balances = await reports.account_balances(platform_id, codes)
        clearing = balances[chart.CLEARING]
        items = open_items(unsettled, uncleared, today=today, settlement_days=settlement_days, holidays=holidays)
        by_order = None
        if any(p.unexplained for p in positions(balances, items)):
            by_order = await reports.balances_by_order(platform_id, chart.CLEARING_ACCOUNTS)
        open_count, exceptions = await reports.open_exceptions(platform_id)
        pending, paid, failed = await reports.payouts(platform_id, start, end)
        in_transit = await reports.account_balance(platform_id, chart.PAYOUTS_IN_TRANSIT)
        sellers = await reports.seller_figures(platform_id)
        trial = await uow.ledger.trial_balance(platform_id)
        return Figures(
            captured=captured,
            doku_fees=doku_fees,
            refunds=refunds,
            settled=settled,
            settled_by_type=by_type,
            unsettled=tuple(unsettled),
            uncleared=tuple(uncleared),
            balances=balances,
            by_order=by_order,
            top_ups=await reports.top_ups(platform_id, start, end),
            clearing_balance=clearing,
            open_exceptions=open_count,
            exceptions=exceptions,
            payouts_pending=pending,
            payouts_paid=paid,
            payouts_failed=failed,
            in_transit_balance=in_transit,
            sellers=sellers,
            trial_balance_zero=trial.is_balanced,
        )

    figures = await db.transaction(read, isolation="repeatable_read", readonly=True)
    return build_reconciliation(
        platform_id,
        figures,
        period_start=period_start,
        period_end=period_end,
        today=today,
        settlement_days=settlement_days,
        holidays=holidays,
        generated_at=datetime.now(UTC),
        view=view,
    )
