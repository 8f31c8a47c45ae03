"""The morning reconciliation: does the ledger agree with the orders, DOKU and the payouts?

Rule: every figure is read from its own source (orders, refunds, settlement lines, payouts, the
ledger's balances) and the report says in plain words wherever two sources disagree or money is
late. It changes nothing.

Two kinds of figures:
* flows in the period (captured, refunded, settled, paid out), by WIB calendar day,
  ``period_start`` to ``period_end`` inclusive;
* positions now (still owed by DOKU, open exceptions, payouts in transit, owed to sellers, the
  trial balance), whatever the period.

"Owed by DOKU" is a captured order not settled yet; it is overdue once ``today`` is past its
capture day plus ``settlement_days`` working days (Saturdays, Sundays and ``holidays`` skipped;
Jenius settles T+2).

"Owed to sellers" is computed twice: from the orders and payouts tables (allocated nets − refund
reversals − paid payouts) and from the ledger alone (pending + available − debt + the seller's
payouts in transit); per seller, the two must be equal.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection
from datetime import date, datetime, time, timedelta, timezone

import asyncpg
import msgspec

from ledger import chart
from ledger.store import LedgerStore

WIB = timezone(timedelta(hours=7), "WIB")
LIST_LIMIT = 500  # rows listed per section; the totals always count everything


# --- working days (pure) -----------------------------------------------------------------------


def is_working_day(day: date, holidays: Collection[date] = ()) -> bool:
    return day.weekday() < 5 and day not in holidays


def add_working_days(day: date, count: int, holidays: Collection[date] = ()) -> date:
    """The ``count``-th working day after ``day`` (``day`` itself is not counted)."""
    while count > 0:
        day += timedelta(days=1)
        if is_working_day(day, holidays):
            count -= 1
    return day


def working_days_between(start: date, end: date, holidays: Collection[date] = ()) -> int:
    """Working days ``d`` with ``start < d <= end`` (0 when ``end <= start``)."""
    days = 0
    day = start
    while day < end:
        day += timedelta(days=1)
        if is_working_day(day, holidays):
            days += 1
    return days


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


def _rupiah(amount: int) -> str:
    return f"{amount:,} IDR"


async def reconcile(
    pool: asyncpg.Pool,
    store: LedgerStore,
    platform_id: str,
    *,
    period_start: date,
    period_end: date,
    settlement_days: int = 2,
    today: date | None = None,
    holidays: Collection[date] = (),
) -> Reconciliation:
    """Reconcile one platform; read-only (one REPEATABLE READ snapshot, so figures agree)."""
    today = today or datetime.now(WIB).date()
    start = datetime.combine(period_start, time(0), WIB)
    end = datetime.combine(period_end + timedelta(days=1), time(0), WIB)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        captured_row = await conn.fetchrow(
            """
            SELECT count(*) AS n, coalesce(sum(amount), 0)::bigint AS gross,
                   coalesce(sum((allocation ->> 'fee')::bigint), 0)::bigint AS fee
              FROM orders WHERE platform_id = $1 AND captured_at >= $2 AND captured_at < $3
            """,
            platform_id, start, end,
        )
        refunds = {
            r["mode"]: Totals(count=r["n"], amount=r["amount"])
            for r in await conn.fetch(
                """
                SELECT mode, count(*) AS n, sum(amount)::bigint AS amount FROM refunds
                 WHERE platform_id = $1 AND status = 'succeeded' AND completed_at >= $2 AND completed_at < $3
                 GROUP BY mode
                """,
                platform_id, start, end,
            )
        }
        settled_row = await conn.fetchrow(
            """
            SELECT count(*) AS n, coalesce(sum(l.gross), 0)::bigint AS gross,
                   coalesce(sum(l.fee), 0)::bigint AS fee, coalesce(sum(l.net), 0)::bigint AS net
              FROM settlement_lines l
              JOIN settlement_reports r ON r.platform_id = l.platform_id AND r.report_id = l.report_id
             WHERE l.platform_id = $1 AND l.status = 'booked'
               AND coalesce(l.settled_on, (r.imported_at AT TIME ZONE 'Asia/Jakarta')::date) BETWEEN $2 AND $3
            """,
            platform_id, period_start, period_end,
        )
        owed_by_doku = await _owed_by_doku(conn, platform_id, today, settlement_days, holidays)
        open_count, exceptions = await _open_exceptions(conn, platform_id)
        payouts = await _payouts(conn, platform_id, start, end)
        owed_to_sellers = await _owed_to_sellers(conn, platform_id)
        trial = await store.trial_balance(platform_id, conn=conn)

    rec = Reconciliation(
        platform_id=platform_id,
        period_start=period_start,
        period_end=period_end,
        today=today,
        settlement_days=settlement_days,
        generated_at=datetime.now(timezone.utc),
        captured=Totals(count=captured_row["n"], amount=captured_row["gross"]),
        doku_fees=captured_row["fee"],
        refunded_gateway=refunds.get("gateway", Totals()),
        refunded_manual=refunds.get("manual", Totals()),
        settled=Settled(lines=settled_row["n"], gross=settled_row["gross"], fee=settled_row["fee"],
                        net=settled_row["net"]),
        owed_by_doku=owed_by_doku,
        open_exceptions=open_count,
        exceptions=exceptions,
        payouts=payouts,
        owed_to_sellers=owed_to_sellers,
        trial_balance_zero=trial.is_balanced,
        clean=True,
        issues=(),
    )
    issues = find_issues(rec)
    return msgspec.structs.replace(rec, issues=issues, clean=not issues)


async def _owed_by_doku(
    conn: asyncpg.Connection, platform_id: str, today: date, settlement_days: int, holidays: Collection[date]
) -> OwedByDoku:
    rows = await conn.fetch(
        """
        SELECT invoice_number, amount, captured_at FROM orders
         WHERE platform_id = $1 AND status = 'captured' AND settled_at IS NULL
         ORDER BY captured_at, invoice_number
        """,
        platform_id,
    )
    overdue: list[OverdueOrder] = []
    overdue_amount = 0
    for r in rows:
        captured_on = r["captured_at"].astimezone(WIB).date()
        due_on = add_working_days(captured_on, settlement_days, holidays)
        if today <= due_on:
            continue
        overdue_amount += r["amount"]
        overdue.append(
            OverdueOrder(
                invoice_number=r["invoice_number"],
                amount=r["amount"],
                captured_at=r["captured_at"],
                due_on=due_on,
                working_days_late=working_days_between(due_on, today, holidays),
                age_working_days=working_days_between(captured_on, today, holidays),
            )
        )
    clearing = await conn.fetchval(
        "SELECT balance FROM accounts WHERE platform_id = $1 AND code = $2", platform_id, chart.CLEARING
    )
    return OwedByDoku(
        unsettled=Totals(count=len(rows), amount=sum(r["amount"] for r in rows)),
        overdue=Totals(count=len(overdue), amount=overdue_amount),
        overdue_orders=tuple(overdue[:LIST_LIMIT]),
        clearing_balance=clearing or 0,
    )


async def _open_exceptions(conn: asyncpg.Connection, platform_id: str) -> tuple[int, tuple[OpenException, ...]]:
    total = await conn.fetchval(
        "SELECT count(*) FROM reconciliation_exceptions WHERE platform_id = $1 AND resolved_at IS NULL", platform_id
    )
    rows = await conn.fetch(
        """
        SELECT exception_id, kind, source, invoice_number, expected, actual, created_at,
               detail ->> 'report_id' AS report_id, (detail ->> 'line_no')::int AS line_no,
               detail ->> 'message' AS message
          FROM reconciliation_exceptions WHERE platform_id = $1 AND resolved_at IS NULL
         ORDER BY created_at, exception_id
         LIMIT $2
        """,
        platform_id,
        LIST_LIMIT,
    )
    listed = tuple(OpenException(**dict(r)) for r in rows)
    return total, listed


async def _payouts(conn: asyncpg.Connection, platform_id: str, start: datetime, end: datetime) -> Payouts:
    row = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE status = 'pending') AS pending_n,
               coalesce(sum(amount) FILTER (WHERE status = 'pending'), 0)::bigint AS pending_amount,
               count(*) FILTER (WHERE status = 'paid' AND in_period) AS paid_n,
               coalesce(sum(amount) FILTER (WHERE status = 'paid' AND in_period), 0)::bigint AS paid_amount,
               count(*) FILTER (WHERE status = 'failed' AND in_period) AS failed_n,
               coalesce(sum(amount) FILTER (WHERE status = 'failed' AND in_period), 0)::bigint AS failed_amount
          FROM (SELECT status, amount, completed_at >= $2 AND completed_at < $3 AS in_period
                  FROM payouts WHERE platform_id = $1) AS p
        """,
        platform_id, start, end,
    )
    in_transit = await conn.fetchval(
        "SELECT balance FROM accounts WHERE platform_id = $1 AND code = $2", platform_id, chart.PAYOUTS_IN_TRANSIT
    )
    return Payouts(
        pending=Totals(count=row["pending_n"], amount=row["pending_amount"]),
        paid=Totals(count=row["paid_n"], amount=row["paid_amount"]),
        failed=Totals(count=row["failed_n"], amount=row["failed_amount"]),
        in_transit_balance=in_transit or 0,
    )


async def _owed_to_sellers(conn: asyncpg.Connection, platform_id: str) -> OwedToSellers:
    allocated = await _by_seller(
        conn,
        """
        SELECT s ->> 'seller_id' AS seller_id, sum((s ->> 'net')::bigint)::bigint AS amount
          FROM orders o CROSS JOIN LATERAL jsonb_array_elements(o.allocation -> 'sellers') AS s
         WHERE o.platform_id = $1 AND o.status = 'captured'
         GROUP BY 1
        """,
        platform_id,
    )
    reversed_ = await _by_seller(
        conn,
        """
        SELECT r.key AS seller_id, sum(r.value::bigint)::bigint AS amount
          FROM orders o CROSS JOIN LATERAL jsonb_each_text(o.reversed -> 'sellers') AS r
         WHERE o.platform_id = $1 AND o.reversed IS NOT NULL
         GROUP BY 1
        """,
        platform_id,
    )
    paid = await _by_seller(
        conn,
        """
        SELECT seller_id, sum(amount)::bigint AS amount FROM payouts
         WHERE platform_id = $1 AND status = 'paid' GROUP BY 1
        """,
        platform_id,
    )
    # From the ledger, not the payouts table: each payout entry names its seller.
    in_transit = await _by_seller(
        conn,
        """
        SELECT e.metadata ->> 'seller_id' AS seller_id, (-sum(p.amount))::bigint AS amount
          FROM accounts a
          JOIN postings p ON p.platform_id = a.platform_id AND p.account_id = a.account_id
          JOIN journal_entries e ON e.platform_id = p.platform_id AND e.entry_id = p.entry_id
         WHERE a.platform_id = $1 AND a.code = $2
         GROUP BY 1
        """,
        platform_id,
        chart.PAYOUTS_IN_TRANSIT,
    )
    balances: dict[str, dict[str, int]] = {}
    for r in await conn.fetch(
        "SELECT code, balance FROM accounts WHERE platform_id = $1 AND code LIKE 'seller:%'", platform_id
    ):
        _, seller_id, kind = r["code"].rsplit(":", 2)
        balances.setdefault(seller_id, {})[kind] = r["balance"]

    sellers = sorted(set(allocated) | set(reversed_) | set(paid) | set(in_transit) | set(balances))
    differences = []
    for seller_id in sellers:
        b = balances.get(seller_id, {})
        expected = allocated.get(seller_id, 0) - reversed_.get(seller_id, 0) - paid.get(seller_id, 0)
        ledger = b.get("pending", 0) + b.get("available", 0) - b.get("debt", 0) + in_transit.get(seller_id, 0)
        if ledger != expected:
            differences.append(SellerDifference(seller_id=seller_id, expected=expected, ledger=ledger,
                                                difference=ledger - expected))
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


async def _by_seller(conn: asyncpg.Connection, query: str, *args: object) -> dict[str, int]:
    return {r["seller_id"]: r["amount"] for r in await conn.fetch(query, *args) if r["amount"]}


def find_issues(rec: Reconciliation) -> tuple[Issue, ...]:
    """Everything an operator should act on, in plain words (pure)."""
    issues = []
    owed = rec.owed_by_doku
    if owed.overdue.count:
        oldest = owed.overdue_orders[0]
        issues.append(Issue(
            code="settlement_overdue",
            message=(
                f"{owed.overdue.count} captured order(s) worth {_rupiah(owed.overdue.amount)} are past DOKU's "
                f"T+{rec.settlement_days} working-day settlement; the oldest, {oldest.invoice_number}, is "
                f"{oldest.working_days_late} working day(s) late"
            ),
        ))
    if rec.open_exceptions:
        kinds: dict[str, int] = {}
        for exc in rec.exceptions:
            kinds[exc.kind] = kinds.get(exc.kind, 0) + 1
        listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        issues.append(Issue(
            code="open_exceptions",
            message=f"{rec.open_exceptions} reconciliation exception(s) are open ({listed})",
        ))
    sellers = rec.owed_to_sellers
    if sellers.difference or sellers.sellers:
        names = ", ".join(f"{d.seller_id} ({d.difference:+,})" for d in sellers.sellers[:10])
        issues.append(Issue(
            code="sellers_differ",
            message=(
                f"the sellers' ledger balances total {_rupiah(sellers.ledger)} but orders, refunds and payouts say "
                f"{_rupiah(sellers.expected)} (difference {sellers.difference:+,} IDR): {names}"
            ),
        ))
    if rec.payouts.in_transit_balance != rec.payouts.pending.amount:
        issues.append(Issue(
            code="payouts_in_transit_differ",
            message=(
                f"payouts:in_transit holds {_rupiah(rec.payouts.in_transit_balance)} but pending payouts total "
                f"{_rupiah(rec.payouts.pending.amount)}"
            ),
        ))
    if not rec.trial_balance_zero:
        issues.append(Issue(code="trial_balance_off", message="the trial balance is not zero: the ledger is broken"))
    return tuple(issues)


# --- CSV ---------------------------------------------------------------------------------------


def reconciliation_csv(rec: Reconciliation) -> str:
    """The report as a section / metric / value / detail table, amounts as integers of rupiah."""
    rows: list[tuple[object, ...]] = [
        ("report", "platform", rec.platform_id, ""),
        ("report", "period", f"{rec.period_start.isoformat()} to {rec.period_end.isoformat()}", "WIB days, inclusive"),
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
        ("settled in period", "lines", rec.settled.lines, "by DOKU's settlement date"),
        ("settled in period", "gross", rec.settled.gross, ""),
        ("settled in period", "fee", rec.settled.fee, ""),
        ("settled in period", "net", rec.settled.net, "to the bank"),
        ("owed by DOKU now", "unsettled_orders", rec.owed_by_doku.unsettled.count, ""),
        ("owed by DOKU now", "unsettled_gross", rec.owed_by_doku.unsettled.amount, ""),
        ("owed by DOKU now", "overdue_orders", rec.owed_by_doku.overdue.count, ""),
        ("owed by DOKU now", "overdue_gross", rec.owed_by_doku.overdue.amount, ""),
        ("owed by DOKU now", "doku_clearing_balance", rec.owed_by_doku.clearing_balance,
         "unsettled gross minus gateway refunds DOKU has not netted yet"),
    ]
    rows += [
        ("overdue order", o.invoice_number, o.amount,
         f"captured {o.captured_at.astimezone(WIB).date().isoformat()}, due {o.due_on.isoformat()}, "
         f"{o.working_days_late} working day(s) late, age {o.age_working_days} working day(s)")
        for o in rec.owed_by_doku.overdue_orders
    ]
    rows += [("open exceptions", "count", rec.open_exceptions, "")]
    rows += [
        ("open exception", exc.kind, exc.actual if exc.actual is not None else "",
         "; ".join(part for part in (
             f"#{exc.exception_id}",
             f"invoice {exc.invoice_number}" if exc.invoice_number else "",
             f"expected {exc.expected}" if exc.expected is not None else "",
             f"report {exc.report_id} line {exc.line_no}" if exc.report_id else f"source {exc.source}",
             exc.message or "",
         ) if part))
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
        ("seller difference", d.seller_id, d.difference, f"ledger {d.ledger}, expected {d.expected}")
        for d in s.sellers
    ]
    rows += [("ledger", "trial_balance_zero", "yes" if rec.trial_balance_zero else "NO", "")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "metric", "value", "detail"))
    writer.writerows(rows)
    return out.getvalue()
