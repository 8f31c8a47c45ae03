"""The morning reconciliation (pure): does the ledger agree with the orders, DOKU and the payouts?

Rule: every figure is read from its own source (orders, refunds, settlement lines, payouts, the
ledger's balances) and the report says in plain words wherever two sources disagree or money is
late. It changes nothing. The figures are read in one snapshot by
``ledger.service.reconciliation``; everything computed from them is here.

Two kinds of figures:
* flows in the period (captured, refunded, settled, paid out), by WIB calendar day,
  ``period_start`` to ``period_end`` inclusive;
* positions now (still owed by DOKU, open exceptions, payouts in transit, owed to sellers, the
  trial balance), whatever the period.

"Owed by DOKU" is a captured order not settled yet; it is overdue once ``today`` is past its
capture day plus ``settlement_days`` working days (Saturdays, Sundays and ``holidays`` skipped;
Jenius settles T+2).

"Owed to sellers" is computed twice: from the orders and payouts tables (allocated nets - refund
reversals - paid payouts) and from the ledger alone (pending + available - debt + the seller's
payouts in transit); per seller, the two must be equal.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import date, datetime

import msgspec

from ledger.calendar import add_working_days, wib_day, working_days_between

LIST_LIMIT = 500  # rows listed per section; the totals always count everything


# --- the report --------------------------------------------------------------------------------


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    count: int = 0
    amount: int = 0


class Settled(msgspec.Struct, frozen=True, kw_only=True):
    lines: int
    gross: int
    fee: int
    net: int


class OverdueOrder(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    amount: int
    captured_at: datetime
    due_on: date
    working_days_late: int
    age_working_days: int


class OwedByDoku(msgspec.Struct, frozen=True, kw_only=True):
    unsettled: Totals  # captured orders DOKU has not settled yet (all of them)
    overdue: Totals  # of which past T+settlement_days working days
    overdue_orders: tuple[OverdueOrder, ...]  # oldest first, at most LIST_LIMIT
    clearing_balance: int  # doku:clearing: unsettled gross minus gateway refunds DOKU has not netted yet


class OpenException(msgspec.Struct, frozen=True, kw_only=True):
    exception_id: int
    kind: str
    source: str
    invoice_number: str | None
    expected: int | None
    actual: int | None
    created_at: datetime
    report_id: str | None = None
    line_no: int | None = None
    message: str | None = None


class Payouts(msgspec.Struct, frozen=True, kw_only=True):
    pending: Totals  # now
    paid: Totals  # completed in the period
    failed: Totals  # completed in the period
    in_transit_balance: int  # payouts:in_transit now; equals pending.amount when healthy


class SellerDifference(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    expected: int
    ledger: int
    difference: int  # ledger - expected


class OwedToSellers(msgspec.Struct, frozen=True, kw_only=True):
    allocated: int  # sellers' nets of every captured order
    reversed: int  # taken back by succeeded refunds
    paid_out: int  # payouts confirmed paid
    expected: int  # allocated - reversed - paid_out
    pending: int
    available: int
    debt: int
    in_transit: int  # payouts:in_transit, per seller from the payout entries
    ledger: int  # pending + available - debt + in_transit
    difference: int  # ledger - expected
    sellers: tuple[SellerDifference, ...]  # only sellers whose two figures differ


class Issue(msgspec.Struct, frozen=True, kw_only=True):
    code: str  # settlement_overdue, open_exceptions, sellers_differ, payouts_in_transit_differ, trial_balance_off
    message: str


class Reconciliation(msgspec.Struct, frozen=True, kw_only=True):
    platform_id: str
    period_start: date
    period_end: date  # inclusive
    today: date
    settlement_days: int
    generated_at: datetime
    captured: Totals
    doku_fees: int  # DOKU's fees on the orders captured in the period
    refunded_gateway: Totals
    refunded_manual: Totals
    settled: Settled
    owed_by_doku: OwedByDoku
    open_exceptions: int  # all open exceptions, whatever their age or source
    exceptions: tuple[OpenException, ...]  # oldest first, at most LIST_LIMIT
    payouts: Payouts
    owed_to_sellers: OwedToSellers
    trial_balance_zero: bool
    clean: bool
    issues: tuple[Issue, ...]


# --- what is read, in one snapshot -------------------------------------------------------------


class UnsettledOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A captured order DOKU has not settled yet."""

    invoice_number: str
    amount: int
    captured_at: datetime


class SellerFigures(msgspec.Struct, frozen=True, kw_only=True):
    """Per seller, what the marketplace tables say and what the ledger holds (zeros left out)."""

    allocated: dict[str, int]  # sellers' nets of captured orders
    reversed: dict[str, int]  # taken back by refund reversals
    paid: dict[str, int]  # payouts confirmed paid
    in_transit: dict[str, int]  # payouts:in_transit, from the payout entries that name the seller
    balances: dict[str, dict[str, int]]  # seller -> {"pending" | "available" | "debt": balance}


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the reconciliation reads, from one REPEATABLE READ snapshot."""

    captured: Totals
    doku_fees: int
    refunds: dict[str, Totals]  # refund mode ("gateway", "manual") -> succeeded in the period
    settled: Settled
    unsettled: tuple[UnsettledOrder, ...]  # oldest capture first
    clearing_balance: int
    open_exceptions: int
    exceptions: tuple[OpenException, ...]  # oldest first, at most LIST_LIMIT
    payouts_pending: Totals
    payouts_paid: Totals
    payouts_failed: Totals
    in_transit_balance: int
    sellers: SellerFigures
    trial_balance_zero: bool


# --- the rules ---------------------------------------------------------------------------------


def owed_by_doku(
    unsettled: Iterable[UnsettledOrder],
    *,
    today: date,
    settlement_days: int,
    holidays: Collection[date] = (),
    clearing_balance: int,
) -> OwedByDoku:
    """What DOKU still owes, and which of it is past T+``settlement_days`` working days."""
    orders = list(unsettled)
    overdue: list[OverdueOrder] = []
    for order in orders:
        captured_on = wib_day(order.captured_at)
        due_on = add_working_days(captured_on, settlement_days, holidays)
        if today <= due_on:
            continue
        overdue.append(
            OverdueOrder(
                invoice_number=order.invoice_number,
                amount=order.amount,
                captured_at=order.captured_at,
                due_on=due_on,
                working_days_late=working_days_between(due_on, today, holidays),
                age_working_days=working_days_between(captured_on, today, holidays),
            )
        )
    return OwedByDoku(
        unsettled=Totals(count=len(orders), amount=sum(o.amount for o in orders)),
        overdue=Totals(count=len(overdue), amount=sum(o.amount for o in overdue)),
        overdue_orders=tuple(overdue[:LIST_LIMIT]),
        clearing_balance=clearing_balance,
    )


def owed_to_sellers(figures: SellerFigures) -> OwedToSellers:
    """Sellers' money from the marketplace tables against the ledger, in total and per seller."""
    allocated, reversed_, paid, in_transit = figures.allocated, figures.reversed, figures.paid, figures.in_transit
    balances = figures.balances
    sellers = sorted(set(allocated) | set(reversed_) | set(paid) | set(in_transit) | set(balances))
    differences = []
    for seller_id in sellers:
        b = balances.get(seller_id, {})
        expected = allocated.get(seller_id, 0) - reversed_.get(seller_id, 0) - paid.get(seller_id, 0)
        ledger = b.get("pending", 0) + b.get("available", 0) - b.get("debt", 0) + in_transit.get(seller_id, 0)
        if ledger != expected:
            differences.append(
                SellerDifference(seller_id=seller_id, expected=expected, ledger=ledger, difference=ledger - expected)
            )
    pending = sum(b.get("pending", 0) for b in balances.values())
    available = sum(b.get("available", 0) for b in balances.values())
    debt = sum(b.get("debt", 0) for b in balances.values())
    expected_total = sum(allocated.values()) - sum(reversed_.values()) - sum(paid.values())
    ledger_total = pending + available - debt + sum(in_transit.values())
    return OwedToSellers(
        allocated=sum(allocated.values()),
        reversed=sum(reversed_.values()),
        paid_out=sum(paid.values()),
        expected=expected_total,
        pending=pending,
        available=available,
        debt=debt,
        in_transit=sum(in_transit.values()),
        ledger=ledger_total,
        difference=ledger_total - expected_total,
        sellers=tuple(differences[:LIST_LIMIT]),
    )


def seller_balances_by_code(balances: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """``{"seller:<id>:<kind>": balance}`` as ``{seller: {kind: balance}}``."""
    found: dict[str, dict[str, int]] = {}
    for code, balance in balances.items():
        _, seller_id, kind = code.rsplit(":", 2)
        found.setdefault(seller_id, {})[kind] = balance
    return found


def build_reconciliation(
    platform_id: str,
    figures: Figures,
    *,
    period_start: date,
    period_end: date,
    today: date,
    settlement_days: int,
    holidays: Collection[date] = (),
    generated_at: datetime,
) -> Reconciliation:
    """The reconciliation of what was read, with its issues."""
    rec = Reconciliation(
        platform_id=platform_id,
        period_start=period_start,
        period_end=period_end,
        today=today,
        settlement_days=settlement_days,
        generated_at=generated_at,
        captured=figures.captured,
        doku_fees=figures.doku_fees,
        refunded_gateway=figures.refunds.get("gateway", Totals()),
        refunded_manual=figures.refunds.get("manual", Totals()),
        settled=figures.settled,
        owed_by_doku=owed_by_doku(
            figures.unsettled,
            today=today,
            settlement_days=settlement_days,
            holidays=holidays,
            clearing_balance=figures.clearing_balance,
        ),
        open_exceptions=figures.open_exceptions,
        exceptions=figures.exceptions,
        payouts=Payouts(
            pending=figures.payouts_pending,
            paid=figures.payouts_paid,
            failed=figures.payouts_failed,
            in_transit_balance=figures.in_transit_balance,
        ),
        owed_to_sellers=owed_to_sellers(figures.sellers),
        trial_balance_zero=figures.trial_balance_zero,
        clean=True,
        issues=(),
    )
    issues = find_issues(rec)
    return msgspec.structs.replace(rec, issues=issues, clean=not issues)


def _rupiah(amount: int) -> str:
    return f"{amount:,} IDR"


def find_issues(rec: Reconciliation) -> tuple[Issue, ...]:
    """Everything an operator should act on, in plain words."""
    issues = []
    owed = rec.owed_by_doku
    if owed.overdue.count:
        oldest = owed.overdue_orders[0]
        issues.append(
            Issue(
                code="settlement_overdue",
                message=(
                    f"{owed.overdue.count} captured order(s) worth {_rupiah(owed.overdue.amount)} are past DOKU's "
                    f"T+{rec.settlement_days} working-day settlement; the oldest, {oldest.invoice_number}, is "
                    f"{oldest.working_days_late} working day(s) late"
                ),
            )
        )
    if rec.open_exceptions:
        kinds: dict[str, int] = {}
        for exc in rec.exceptions:
            kinds[exc.kind] = kinds.get(exc.kind, 0) + 1
        listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        issues.append(
            Issue(
                code="open_exceptions",
                message=f"{rec.open_exceptions} reconciliation exception(s) are open ({listed})",
            )
        )
    sellers = rec.owed_to_sellers
    if sellers.difference or sellers.sellers:
        names = ", ".join(f"{d.seller_id} ({d.difference:+,})" for d in sellers.sellers[:10])
        issues.append(
            Issue(
                code="sellers_differ",
                message=(
                    f"the sellers' ledger balances total {_rupiah(sellers.ledger)} but orders, refunds and payouts say "
                    f"{_rupiah(sellers.expected)} (difference {sellers.difference:+,} IDR): {names}"
                ),
            )
        )
    if rec.payouts.in_transit_balance != rec.payouts.pending.amount:
        issues.append(
            Issue(
                code="payouts_in_transit_differ",
                message=(
                    f"payouts:in_transit holds {_rupiah(rec.payouts.in_transit_balance)} but pending payouts total "
                    f"{_rupiah(rec.payouts.pending.amount)}"
                ),
            )
        )
    if not rec.trial_balance_zero:
        issues.append(Issue(code="trial_balance_off", message="the trial balance is not zero: the ledger is broken"))
    return tuple(issues)
