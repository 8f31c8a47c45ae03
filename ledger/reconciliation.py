"""The morning reconciliation (pure): does the ledger agree with the orders, DOKU and the payouts?

Rule: every figure is read from its own source (orders, refunds, settlement lines, payouts, the
ledger's balances) and the report says in plain words wherever two sources disagree or money is
late. It changes nothing. The figures are read in one snapshot by
``ledger.service.reconciliation``; everything computed from them is here.

Two kinds of figures:
* flows in the period (captured, refunded, settled, paid out), by WIB calendar day,
  ``period_start`` to ``period_end`` inclusive, in one of two views (``view``):
  ``capture_date`` (the orders captured in the period, and whatever became of them since: their
  refunds and their settlement, whenever they happened) or ``settlement_date`` (each flow by its
  own date: captures by capture date, refunds by completion, DOKU's lines by settlement date);
* positions now (still owed by DOKU, open items, open exceptions, payouts in transit, owed to
  sellers, the refund deposit, the trial balance), whatever the period.

The truth about the clearing, suspense and fee accounts (``chart.CLEARING_ACCOUNTS``): every rupiah
they hold must be explained by an open item, listed by order (``open_items``):

    awaiting_settlement        a captured order DOKU has not settled, within T+settlement_days
                               working days: its gross less any fee DOKU gave back on refunds in
                               doku:clearing, and DOKU's fee still withheld in doku:fees_withheld
    refund_awaiting_deduction  a gateway refund DOKU paid and has not deducted yet: minus the refund
                               (less any fee given back) in doku:clearing
    deposit_refund_in_flight   a refund DOKU's Refund Service has not confirmed paying: the refund in
                               doku:deposit_refunds_in_flight

What they do not explain is ``unexplained``, by account and by order (an order past its settlement
date is listed there with the reason ``settlement_overdue``; money the open items do not account
for with ``not_explained``; an adjustment waiting in doku:suspense with ``suspense``). The report is
``clean`` only when nothing is unexplained and no other issue is found.

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
from typing import Literal

import msgspec

from ledger import chart
from ledger.calendar import add_working_days, wib_day, working_days_between

LIST_LIMIT = 500  # rows listed per section; the totals always count everything

View = Literal["capture_date", "settlement_date"]
VIEWS: tuple[str, ...] = ("capture_date", "settlement_date")
OpenItemKind = Literal["awaiting_settlement", "refund_awaiting_deduction", "deposit_refund_in_flight"]
# Aging buckets of open items, in working days since the item began (captured, refunded).
AGING_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-2", 0, 2),
    ("3-5", 3, 5),
    ("6-10", 6, 10),
    ("11+", 11, None),
)


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


class OpenItem(msgspec.Struct, frozen=True, kw_only=True):
    """Money in a clearing, suspense or fee account that is on its way, and why.

    ``amount`` is the money at stake (the order's gross, the refund); ``accounts`` what the item
    explains in each account, in the account's normal direction.
    """

    kind: OpenItemKind
    invoice_number: str
    refund_id: str | None
    amount: int
    accounts: dict[str, int]
    since: datetime
    age_working_days: int
    due_on: date | None = None  # awaiting_settlement: T+settlement_days working days after capture
    overdue: bool = False  # past due: it no longer explains anything


class AgingBucket(msgspec.Struct, frozen=True, kw_only=True):
    bucket: str  # working days since the item began: "0-2", "3-5", "6-10", "11+"
    count: int
    amount: int


class OpenItems(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    amount: int
    by_kind: dict[str, Totals]
    aging: tuple[AgingBucket, ...]
    items: tuple[OpenItem, ...]  # oldest first, at most LIST_LIMIT


class AccountPosition(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    balance: int  # now, in the account's normal direction
    explained: int  # by open items that are not overdue
    unexplained: int  # balance - explained


class UnexplainedMoney(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str | None  # None: entries that name no order
    account: str
    amount: int
    reason: str  # settlement_overdue, not_explained, suspense


class Unexplained(msgspec.Struct, frozen=True, kw_only=True):
    total: int  # the sum of the absolute remainders by account; 0 when every rupiah is explained
    by_account: dict[str, int]  # only accounts with a remainder
    by_order: tuple[UnexplainedMoney, ...]  # at most LIST_LIMIT


class Deposit(msgspec.Struct, frozen=True, kw_only=True):
    """The deposit behind DOKU's Refund Service."""

    balance: int  # doku:refund_deposit now
    in_flight: int  # doku:deposit_refunds_in_flight: refunds DOKU has not confirmed paying
    available: int  # what new deposit refunds may still use
    topped_up: Totals  # top-ups in the period
    refunded: Totals  # deposit refunds recorded in the period


class Issue(msgspec.Struct, frozen=True, kw_only=True):
    # settlement_overdue, unexplained_money, open_exceptions, sellers_differ, payouts_in_transit_differ,
    # trial_balance_off
    code: str
    message: str


class Reconciliation(msgspec.Struct, frozen=True, kw_only=True):
    platform_id: str
    period_start: date
    period_end: date  # inclusive
    view: View  # capture_date: the period's orders and what became of them; settlement_date: flows by their own date
    today: date
    settlement_days: int
    generated_at: datetime
    captured: Totals
    doku_fees: int  # DOKU's fees on the orders captured in the period
    refunded_gateway: Totals
    refunded_manual: Totals
    refunded_deposit: Totals
    refunded_chargeback: Totals
    settled: Settled  # DOKU's payment lines
    settled_by_type: dict[str, Settled]  # every booked line kind: payment, refund, chargeback, adjustment, ...
    owed_by_doku: OwedByDoku
    open_items: OpenItems
    accounts: tuple[AccountPosition, ...]  # the clearing, suspense and fee accounts
    unexplained: Unexplained
    deposit: Deposit
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
    fee: int = 0  # DOKU's fee on it
    fee_returned: int = 0  # the part of that fee DOKU gave back on refunds so far


class UnclearedRefund(msgspec.Struct, frozen=True, kw_only=True):
    """A succeeded refund whose money has not finally left: DOKU has not deducted it (gateway) or
    its Refund Service has not confirmed paying it (deposit)."""

    refund_id: str
    invoice_number: str
    mode: str
    amount: int
    fee_returned: int
    completed_at: datetime


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
    refunds: dict[str, Totals]  # refund mode ("gateway", "manual", ...) -> succeeded in the period
    settled: Settled
    unsettled: tuple[UnsettledOrder, ...]  # oldest capture first
    clearing_balance: int
    settled_by_type: dict[str, Settled] = {}
    uncleared: tuple[UnclearedRefund, ...] = ()
    balances: dict[str, int] = {}  # the clearing, suspense, fee and deposit accounts now
    by_order: dict[str, dict[str, int]] | None = None  # invoice ("" for none) -> account -> balance; read when
    # something is unexplained
    top_ups: Totals = Totals()
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


def open_items(
    unsettled: Iterable[UnsettledOrder],
    uncleared: Iterable[UnclearedRefund],
    *,
    today: date,
    settlement_days: int,
    holidays: Collection[date] = (),
) -> list[OpenItem]:
    """Every open item, oldest first (see the module docstring for what each explains)."""
    items: list[OpenItem] = []
    for order in unsettled:
        captured_on = wib_day(order.captured_at)
        due_on = add_working_days(captured_on, settlement_days, holidays)
        items.append(
            OpenItem(
                kind="awaiting_settlement",
                invoice_number=order.invoice_number,
                refund_id=None,
                amount=order.amount,
                accounts={
                    chart.CLEARING: order.amount - order.fee_returned,
                    chart.FEES_WITHHELD: order.fee - order.fee_returned,
                },
                since=order.captured_at,
                age_working_days=working_days_between(captured_on, today, holidays),
                due_on=due_on,
                overdue=today > due_on,
            )
        )
    for refund in uncleared:
        if refund.mode == "gateway":
            kind: OpenItemKind = "refund_awaiting_deduction"
            accounts = {chart.CLEARING: -(refund.amount - refund.fee_returned)}
        elif refund.mode == "deposit":
            kind, accounts = "deposit_refund_in_flight", {chart.DEPOSIT_IN_FLIGHT: refund.amount}
        else:
            continue  # manual and chargeback refunds leave at once
        items.append(
            OpenItem(
                kind=kind,
                invoice_number=refund.invoice_number,
                refund_id=refund.refund_id,
                amount=refund.amount,
                accounts=accounts,
                since=refund.completed_at,
                age_working_days=working_days_between(wib_day(refund.completed_at), today, holidays),
            )
        )
    items.sort(key=lambda i: (i.since, i.invoice_number, i.refund_id or ""))
    return items


def explained_by(items: Iterable[OpenItem]) -> dict[str, int]:
    """What the items that are not overdue explain in each clearing, suspense and fee account."""
    explained = dict.fromkeys(chart.CLEARING_ACCOUNTS, 0)
    for item in items:
        if not item.overdue:
            for account, amount in item.accounts.items():
                explained[account] = explained.get(account, 0) + amount
    return explained


def positions(balances: Mapping[str, int], items: Iterable[OpenItem]) -> tuple[AccountPosition, ...]:
    explained = explained_by(items)
    return tuple(
        AccountPosition(
            account=code,
            balance=balances.get(code, 0),
            explained=explained[code],
            unexplained=balances.get(code, 0) - explained[code],
        )
        for code in chart.CLEARING_ACCOUNTS
    )


def unexplained(
    accounts: Iterable[AccountPosition], items: Iterable[OpenItem], by_order: Mapping[str, Mapping[str, int]] | None
) -> Unexplained:
    """The remainder by account, and by order: overdue items, and what the items do not account for.

    ``by_order`` is each order's share of the accounts' balances (from its entries; "" for entries
    that name no order); it is read only when some account has a remainder.
    """
    remainders = {p.account: p.unexplained for p in accounts if p.unexplained}
    listed: list[UnexplainedMoney] = []
    expected: dict[tuple[str, str], int] = {}
    for item in items:
        for account, amount in item.accounts.items():
            expected[item.invoice_number, account] = expected.get((item.invoice_number, account), 0) + amount
            if item.overdue and amount:
                found = UnexplainedMoney(
                    invoice_number=item.invoice_number, account=account, amount=amount, reason="settlement_overdue"
                )
                listed.append(found)
    if remainders and by_order is not None:
        keys = {(invoice, account) for invoice, accounts in by_order.items() for account in accounts} | set(expected)
        for invoice, account in sorted(keys):
            if account not in chart.CLEARING_ACCOUNTS:
                continue
            left = by_order.get(invoice, {}).get(account, 0) - expected.get((invoice, account), 0)
            if left:
                reason = "suspense" if account == chart.SUSPENSE else "not_explained"
                listed.append(
                    UnexplainedMoney(invoice_number=invoice or None, account=account, amount=left, reason=reason)
                )
    return Unexplained(
        total=sum(abs(v) for v in remainders.values()), by_account=remainders, by_order=tuple(listed[:LIST_LIMIT])
    )


def aging(items: Iterable[OpenItem]) -> tuple[AgingBucket, ...]:
    buckets = []
    every = list(items)
    for name, low, high in AGING_BUCKETS:
        inside = [i for i in every if i.age_working_days >= low and (high is None or i.age_working_days <= high)]
        buckets.append(AgingBucket(bucket=name, count=len(inside), amount=sum(i.amount for i in inside)))
    return tuple(buckets)


def summarize_items(items: Iterable[OpenItem]) -> OpenItems:
    every = list(items)
    by_kind: dict[str, Totals] = {}
    for item in every:
        was = by_kind.get(item.kind, Totals())
        by_kind[item.kind] = Totals(count=was.count + 1, amount=was.amount + item.amount)
    return OpenItems(
        count=len(every),
        amount=sum(i.amount for i in every),
        by_kind=by_kind,
        aging=aging(every),
        items=tuple(every[:LIST_LIMIT]),
    )


def deposit_position(balances: Mapping[str, int], top_ups: Totals, refunded: Totals, recording: int = 0) -> Deposit:
    balance, in_flight = balances.get(chart.REFUND_DEPOSIT, 0), balances.get(chart.DEPOSIT_IN_FLIGHT, 0)
    return Deposit(
        balance=balance,
        in_flight=in_flight,
        available=balance - in_flight - recording,
        topped_up=top_ups,
        refunded=refunded,
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
    view: View = "capture_date",
) -> Reconciliation:
    """The reconciliation of what was read, with its issues."""
    items = open_items(
        figures.unsettled, figures.uncleared, today=today, settlement_days=settlement_days, holidays=holidays
    )
    accounts = positions(figures.balances, items)
    rec = Reconciliation(
        platform_id=platform_id,
        period_start=period_start,
        period_end=period_end,
        view=view,
        today=today,
        settlement_days=settlement_days,
        generated_at=generated_at,
        captured=figures.captured,
        doku_fees=figures.doku_fees,
        refunded_gateway=figures.refunds.get("gateway", Totals()),
        refunded_manual=figures.refunds.get("manual", Totals()),
        refunded_deposit=figures.refunds.get("deposit", Totals()),
        refunded_chargeback=figures.refunds.get("chargeback", Totals()),
        settled=figures.settled,
        settled_by_type=figures.settled_by_type,
        owed_by_doku=owed_by_doku(
            figures.unsettled,
            today=today,
            settlement_days=settlement_days,
            holidays=holidays,
            clearing_balance=figures.clearing_balance,
        ),
        open_items=summarize_items(items),
        accounts=accounts,
        unexplained=unexplained(accounts, items, figures.by_order),
        deposit=deposit_position(figures.balances, figures.top_ups, figures.refunds.get("deposit", Totals())),
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
    money = rec.unexplained
    if money.total:
        where = ", ".join(f"{account} {amount:+,}" for account, amount in money.by_account.items())
        orders = sorted({m.invoice_number or "(no order)" for m in money.by_order})
        named = ", ".join(orders[:10]) + (" …" if len(orders) > 10 else "")
        issues.append(
            Issue(
                code="unexplained_money",
                message=(
                    f"{_rupiah(money.total)} in the clearing, suspense and fee accounts is not explained by an "
                    f"open item ({where})" + (f"; orders: {named}" if named else "")
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
