"""What a seller is owed, and the lines that explain it.

Rule: everything here is read from the ledger (account balances and postings), never recomputed
from orders, so a seller's statement always adds up to the seller's balance. Balances are shown
in each account's normal direction: pending and available are what the platform owes the seller,
debt is what the seller owes the platform, and ``payable = pending + available - debt``.
Payouts in transit have left available and are not part of ``payable``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from ledger import chart, errors
from ledger.store import LedgerStore

SellerAccount = Literal["pending", "available", "debt"]
StatementScope = Literal["pending", "available", "debt", "all"]
_ACCOUNTS: tuple[SellerAccount, ...] = ("pending", "available", "debt")


def _code(seller_id: str, account: SellerAccount) -> str:
    return {"pending": chart.seller_pending, "available": chart.seller_available, "debt": chart.seller_debt}[account](
        seller_id
    )


class SellerBalances(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    pending: int  # captured, not yet settled by DOKU
    available: int  # settled, may be paid out
    debt: int  # refunded after the money was paid out; repaid from the next settlements
    payable: int  # pending + available - debt
    as_of: datetime | None  # None: now


async def seller_balances(
    store: LedgerStore,
    platform_id: str,
    seller_id: str,
    *,
    as_of: datetime | None = None,
    conn: asyncpg.Connection | None = None,
) -> SellerBalances:
    codes = [_code(seller_id, account) for account in _ACCOUNTS]
    try:
        found = await store.balances(platform_id, codes, as_of=as_of, conn=conn)
    except errors.UnknownAccount as exc:
        raise errors.SellerNotFound(f"no seller {seller_id!r}", seller_id=seller_id) from exc
    pending, available, debt = (found[code] for code in codes)
    return SellerBalances(
        seller_id=seller_id, pending=pending, available=available, debt=debt,
        payable=pending + available - debt, as_of=as_of,
    )


class SellerStatementLine(msgspec.Struct, frozen=True, kw_only=True):
    """One posting on a seller's account.

    ``change`` moves ``balance``: in a one-account statement the balance is that account's (a
    debt statement shows debt growing as positive); in the ``all`` statement it is ``payable``,
    so a credit to pending or available is positive and a new debt negative. The links come from
    the entry: the order's invoice, the refund, the settlement report, the payout.
    """

    posting_id: int
    entry_id: int
    at: datetime
    effective_at: datetime
    account: SellerAccount
    kind: str  # capture, refund, settlement, payout, payout_paid, payout_failed, …
    change: int
    balance: int
    invoice_number: str | None = None
    refund_id: str | None = None
    report_id: str | None = None
    payout_id: str | None = None


class SellerStatement(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    account: StatementScope
    lines: tuple[SellerStatementLine, ...]
    next_cursor: int | None  # pass as ``after`` for the next page; None on the last page


async def seller_statement(
    store: LedgerStore,
    platform_id: str,
    seller_id: str,
    *,
    account: StatementScope = "all",
    after: int | None = None,
    limit: int = 100,
    since: datetime | None = None,
    until: datetime | None = None,
) -> SellerStatement:
    """A seller's postings oldest first with a running balance; keyset-paginated by posting id.

    ``since`` (inclusive) and ``until`` (exclusive) bound the posting time; the running balance
    still counts everything before the first line shown.
    """
    if account not in ("pending", "available", "debt", "all"):
        raise ValueError(f"account must be pending, available, debt or all, not {account!r}")
    scope: tuple[SellerAccount, ...] = _ACCOUNTS if account == "all" else (account,)
    async with store.pool.acquire() as conn:
        ids = {
            r["account_id"]: r["code"]
            for r in await conn.fetch(
                "SELECT account_id, code FROM accounts WHERE platform_id = $1 AND code = ANY($2::text[])",
                platform_id,
                [_code(seller_id, a) for a in _ACCOUNTS],
            )
        }
        if len(ids) < len(_ACCOUNTS):
            raise errors.SellerNotFound(f"no seller {seller_id!r}", seller_id=seller_id)
        name_of: dict[int, SellerAccount] = {
            account_id: next(a for a in _ACCOUNTS if _code(seller_id, a) == code) for account_id, code in ids.items()
        }
        wanted = [account_id for account_id, name in name_of.items() if name in scope]
        rows = await conn.fetch(
            """
            SELECT p.posting_id, p.entry_id, p.account_id, p.amount, p.balance_after, p.created_at,
                   e.kind, e.effective_at, e.metadata
              FROM postings p
              JOIN journal_entries e ON e.platform_id = p.platform_id AND e.entry_id = p.entry_id
             WHERE p.platform_id = $1 AND p.account_id = ANY($2::bigint[]) AND p.posting_id > $3
               AND ($5::timestamptz IS NULL OR p.created_at >= $5)
               AND ($6::timestamptz IS NULL OR p.created_at < $6)
             ORDER BY p.posting_id
             LIMIT $4
            """,
            platform_id,
            wanted,
            after or 0,
            limit + 1,
            since,
            until,
        )
        page = rows[:limit]
        current: dict[int, int] = {}
        if account == "all" and page:
            current = await _balances_before(conn, platform_id, list(name_of), page[0]["posting_id"])

    lines = []
    for r in page:
        name = name_of[r["account_id"]]
        meta = _metadata(r["metadata"])
        if account == "all":
            current[r["account_id"]] = r["balance_after"]
            by_name = {name_of[a]: b for a, b in current.items()}
            balance = by_name["pending"] + by_name["available"] - by_name["debt"]
            change = -r["amount"]  # a credit raises pending/available, a debit raises debt
        else:
            balance = r["balance_after"]
            change = r["amount"] if name == "debt" else -r["amount"]
        lines.append(
            SellerStatementLine(
                posting_id=r["posting_id"],
                entry_id=r["entry_id"],
                at=r["created_at"],
                effective_at=r["effective_at"],
                account=name,
                kind=r["kind"],
                change=change,
                balance=balance,
                invoice_number=meta.get("invoice_number"),
                refund_id=meta.get("refund_id"),
                report_id=meta.get("report_id"),
                payout_id=meta.get("payout_id"),
            )
        )
    return SellerStatement(
        seller_id=seller_id,
        account=account,
        lines=tuple(lines),
        next_cursor=lines[-1].posting_id if len(rows) > limit else None,
    )


async def _balances_before(
    conn: asyncpg.Connection, platform_id: str, account_ids: list[int], posting_id: int
) -> dict[int, int]:
    rows = await conn.fetch(
        """
        SELECT a.account_id,
               coalesce((SELECT q.balance_after FROM postings q
                          WHERE q.platform_id = $1 AND q.account_id = a.account_id AND q.posting_id < $3
                          ORDER BY q.account_version DESC LIMIT 1), 0) AS balance
          FROM unnest($2::bigint[]) AS a(account_id)
        """,
        platform_id,
        account_ids,
        posting_id,
    )
    return {r["account_id"]: r["balance"] for r in rows}


def _metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    return msgspec.json.decode(value) if isinstance(value, str) else dict(value)


STATEMENT_COLUMNS = (
    "posting_id", "entry_id", "at", "account", "kind", "change", "balance",
    "invoice_number", "refund_id", "report_id", "payout_id",
)


def statement_csv(lines: Iterable[SellerStatementLine]) -> str:
    """A statement as CSV, one row per line, amounts as plain integers of rupiah."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_COLUMNS)
    for line in lines:
        writer.writerow(
            (
                line.posting_id, line.entry_id, line.at.isoformat(), line.account, line.kind, line.change,
                line.balance, line.invoice_number or "", line.refund_id or "", line.report_id or "",
                line.payout_id or "",
            )
        )
    return out.getvalue()
