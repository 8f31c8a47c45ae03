"""The read queries of the reconciliation and of seller statements (SQL only, nothing is written).

Rule: each figure is read from its own source table, as it is stored, so the reconciliation can
compare sources; every query is per platform. The rules that compare them live in
``ledger.reconciliation`` and ``ledger.balances``. Run them inside one REPEATABLE READ transaction
when the figures must agree with each other (``ledger.service.reconciliation`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import asyncpg

from ledger import chart
from ledger.balances import SellerPosting
from ledger.reconciliation import (
    LIST_LIMIT,
    OpenException,
    SellerFigures,
    Settled,
    Totals,
    UnclearedRefund,
    UnsettledOrder,
    View,
    seller_balances_by_code,
)


class ReportsTable:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # -- flows in a period ------------------------------------------------------------------

    async def captured(self, platform_id: str, start: datetime, end: datetime) -> tuple[Totals, int]:
        """Orders captured in ``[start, end)``, and DOKU's fees on them."""
        row = await self.conn.fetchrow(
            """
            SELECT count(*) AS n, coalesce(sum(amount), 0)::bigint AS gross,
                   coalesce(sum((allocation ->> 'fee')::bigint), 0)::bigint AS fee
              FROM orders WHERE platform_id = $1 AND captured_at >= $2 AND captured_at < $3
            """,
            platform_id,
            start,
            end,
        )
        return Totals(count=row["n"], amount=row["gross"]), row["fee"]

    async def refunds_by_mode(
        self, platform_id: str, start: datetime, end: datetime, view: View = "settlement_date"
    ) -> dict[str, Totals]:
        """Succeeded refunds by mode: completed in ``[start, end)``, or (view ``capture_date``) of the
        orders captured in ``[start, end)``, whenever they were made."""
        by_capture = view == "capture_date"
        rows = await self.conn.fetch(
            """
            SELECT f.mode, count(*) AS n, sum(f.amount)::bigint AS amount FROM refunds f
              JOIN orders o ON o.platform_id = f.platform_id AND o.invoice_number = f.invoice_number
             WHERE f.platform_id = $1 AND f.status = 'succeeded'
               AND CASE WHEN $4 THEN o.captured_at >= $2 AND o.captured_at < $3
                        ELSE f.completed_at >= $2 AND f.completed_at < $3 END
             GROUP BY f.mode
            """,
            platform_id,
            start,
            end,
            by_capture,
        )
        return {r["mode"]: Totals(count=r["n"], amount=r["amount"]) for r in rows}

    async def settled_by_type(
        self, platform_id: str, first: date, last: date, start: datetime, end: datetime, view: View
    ) -> dict[str, Settled]:
        """Booked settlement lines by kind: by DOKU's settlement date (the import's WIB day when it has
        none) from ``first`` to ``last``, or (view ``capture_date``) the lines of the orders captured
        in ``[start, end)``, whatever their settlement date."""
        rows = await self.conn.fetch(
            """
            SELECT l.line_type, count(*) AS n, coalesce(sum(l.gross), 0)::bigint AS gross,
                   coalesce(sum(l.fee), 0)::bigint AS fee, coalesce(sum(l.net), 0)::bigint AS net
              FROM settlement_lines l
              JOIN settlement_reports r ON r.platform_id = l.platform_id AND r.report_id = l.report_id
              LEFT JOIN orders o ON o.platform_id = l.platform_id AND o.invoice_number = l.invoice_number
             WHERE l.platform_id = $1 AND l.status = 'booked'
               AND CASE WHEN $6 THEN o.captured_at >= $4 AND o.captured_at < $5
                        ELSE coalesce(l.settled_on, (r.imported_at AT TIME ZONE 'Asia/Jakarta')::date)
                             BETWEEN $2 AND $3 END
             GROUP BY l.line_type ORDER BY l.line_type
            """,
            platform_id,
            first,
            last,
            start,
            end,
            view == "capture_date",
        )
        return {r["line_type"]: Settled(lines=r["n"], gross=r["gross"], fee=r["fee"], net=r["net"]) for r in rows}

    async def top_ups(self, platform_id: str, start: datetime, end: datetime) -> Totals:
        """Top-ups of the refund deposit booked in ``[start, end)``."""
        row = await self.conn.fetchrow(
            """
            SELECT count(DISTINCT e.entry_id) AS n, coalesce(sum(p.amount), 0)::bigint AS amount
              FROM journal_entries e
              JOIN postings p ON p.platform_id = e.platform_id AND p.entry_id = e.entry_id AND p.amount > 0
             WHERE e.platform_id = $1 AND e.kind = 'deposit_top_up' AND e.effective_at >= $2 AND e.effective_at < $3
            """,
            platform_id,
            start,
            end,
        )
        return Totals(count=row["n"], amount=row["amount"])

    async def payouts(self, platform_id: str, start: datetime, end: datetime) -> tuple[Totals, Totals, Totals]:
        """Payouts pending now, and paid and failed in ``[start, end)``."""
        row = await self.conn.fetchrow(
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
            platform_id,
            start,
            end,
        )
        return (
            Totals(count=row["pending_n"], amount=row["pending_amount"]),
            Totals(count=row["paid_n"], amount=row["paid_amount"]),
            Totals(count=row["failed_n"], amount=row["failed_amount"]),
        )

    # -- positions now ----------------------------------------------------------------------

    async def unsettled_orders(self, platform_id: str) -> list[UnsettledOrder]:
        """Captured orders DOKU has not settled, oldest capture first, with DOKU's fee and the part of
        it DOKU gave back on refunds so far."""
        rows = await self.conn.fetch(
            """
            SELECT invoice_number, amount, captured_at, (allocation ->> 'fee')::bigint AS fee,
                   coalesce((reversed ->> 'fee')::bigint, 0) AS fee_returned
              FROM orders
             WHERE platform_id = $1 AND status = 'captured' AND settled_at IS NULL
             ORDER BY captured_at, invoice_number
            """,
            platform_id,
        )
        return [UnsettledOrder(**{f: r[f] for f in UnsettledOrder.__struct_fields__}) for r in rows]

    async def uncleared_refunds(self, platform_id: str) -> list[UnclearedRefund]:
        """Succeeded gateway and deposit refunds whose money has not finally left, oldest first."""
        rows = await self.conn.fetch(
            """
            SELECT refund_id, invoice_number, mode, amount, coalesce((reversal ->> 'fee')::bigint, 0) AS fee_returned,
                   completed_at
              FROM refunds
             WHERE platform_id = $1 AND status = 'succeeded' AND cleared_at IS NULL AND mode IN ('gateway', 'deposit')
             ORDER BY completed_at, refund_id
            """,
            platform_id,
        )
        return [UnclearedRefund(**{f: r[f] for f in UnclearedRefund.__struct_fields__}) for r in rows]

    async def account_balances(self, platform_id: str, codes: Sequence[str]) -> dict[str, int]:
        """The accounts' balances now (0 for an account the platform does not have)."""
        rows = await self.conn.fetch(
            "SELECT code, balance FROM accounts WHERE platform_id = $1 AND code = ANY($2::text[])",
            platform_id,
            list(codes),
        )
        found = {r["code"]: r["balance"] for r in rows}
        return {code: found.get(code, 0) for code in codes}

    async def balances_by_order(self, platform_id: str, codes: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each order's share of the accounts' balances, from the entries that name it ("" for the
        entries that name no order), in each account's normal direction. Reads every posting of those
        accounts: the reconciliation asks only when something is unexplained."""
        rows = await self.conn.fetch(
            """
            SELECT coalesce(e.metadata ->> 'invoice_number', '') AS invoice_number, a.code,
                   (sum(p.amount) * min(a.normal_sign))::bigint AS balance
              FROM accounts a
              JOIN postings p ON p.platform_id = a.platform_id AND p.account_id = a.account_id
              JOIN journal_entries e ON e.platform_id = p.platform_id AND e.entry_id = p.entry_id
             WHERE a.platform_id = $1 AND a.code = ANY($2::text[])
             GROUP BY 1, 2
            HAVING sum(p.amount) <> 0
            """,
            platform_id,
            list(codes),
        )
        found: dict[str, dict[str, int]] = {}
        for r in rows:
            found.setdefault(r["invoice_number"], {})[r["code"]] = r["balance"]
        return found

    async def account_balance(self, platform_id: str, code: str) -> int:
        """An account's balance now (0 when the platform has no such account)."""
        balance: int | None = await self.conn.fetchval(
            "SELECT balance FROM accounts WHERE platform_id = $1 AND code = $2", platform_id, code
        )
        return balance or 0

    async def open_exceptions(self, platform_id: str) -> tuple[int, tuple[OpenException, ...]]:
        """How many reconciliation exceptions are open, and the oldest ``LIST_LIMIT`` of them."""
        total: int = await self.conn.fetchval(
            "SELECT count(*) FROM reconciliation_exceptions WHERE platform_id = $1 AND resolved_at IS NULL",
            platform_id,
        )
        rows = await self.conn.fetch(
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
        return total, tuple(OpenException(**{f: r[f] for f in OpenException.__struct_fields__}) for r in rows)

    async def seller_figures(self, platform_id: str) -> SellerFigures:
        """Per seller: allocated, reversed and paid from the marketplace tables; the ledger's side."""
        allocated = await self._by_seller(
            """
            SELECT s ->> 'seller_id' AS seller_id, sum((s ->> 'net')::bigint)::bigint AS amount
              FROM orders o CROSS JOIN LATERAL jsonb_array_elements(o.allocation -> 'sellers') AS s
             WHERE o.platform_id = $1 AND o.status = 'captured'
             GROUP BY 1
            """,
            platform_id,
        )
        reversed_ = await self._by_seller(
            """
            SELECT r.key AS seller_id, sum(r.value::bigint)::bigint AS amount
              FROM orders o CROSS JOIN LATERAL jsonb_each_text(o.reversed -> 'sellers') AS r
             WHERE o.platform_id = $1 AND o.reversed IS NOT NULL
             GROUP BY 1
            """,
            platform_id,
        )
        paid = await self._by_seller(
            """
            SELECT seller_id, sum(amount)::bigint AS amount FROM payouts
             WHERE platform_id = $1 AND status = 'paid' GROUP BY 1
            """,
            platform_id,
        )
        # From the ledger, not the payouts table: each payout entry names its seller.
        in_transit = await self._by_seller(
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
        rows = await self.conn.fetch(
            "SELECT code, balance FROM accounts WHERE platform_id = $1 AND code LIKE 'seller:%'", platform_id
        )
        return SellerFigures(
            allocated=allocated,
            reversed=reversed_,
            paid=paid,
            in_transit=in_transit,
            balances=seller_balances_by_code({r["code"]: r["balance"] for r in rows}),
        )

    async def _by_seller(self, query: str, *args: object) -> dict[str, int]:
        return {r["seller_id"]: r["amount"] for r in await self.conn.fetch(query, *args) if r["amount"]}

    # -- seller statements ------------------------------------------------------------------

    async def account_ids(self, platform_id: str, codes: Sequence[str]) -> dict[int, str]:
        """Account id -> code, for the codes that exist."""
        rows = await self.conn.fetch(
            "SELECT account_id, code FROM accounts WHERE platform_id = $1 AND code = ANY($2::text[])",
            platform_id,
            list(codes),
        )
        return {r["account_id"]: r["code"] for r in rows}

    async def postings(
        self,
        platform_id: str,
        account_ids: Sequence[int],
        *,
        after: int,
        limit: int,
        since: datetime | None,
        until: datetime | None,
    ) -> list[SellerPosting]:
        """Postings on the accounts after posting ``after``, in posting order, with their entries.

        Each account's postings are read in version order up to the page's length (the ledger writes
        an account's postings in version order, so that is their posting order too): a page costs
        its own lines however long the history, and only the page's entries are joined.
        """
        rows = await self.conn.fetch(
            """
            SELECT p.posting_id, p.entry_id, p.account_id, p.amount, p.balance_after, p.created_at,
                   e.kind, e.effective_at, coalesce(e.metadata, '{}'::jsonb) AS metadata
              FROM unnest($2::bigint[]) AS a(account_id)
              CROSS JOIN LATERAL (
                  SELECT q.posting_id, q.entry_id, q.account_id, q.amount, q.balance_after, q.created_at
                    FROM postings q
                   WHERE q.platform_id = $1 AND q.account_id = a.account_id AND q.posting_id > $3
                     AND ($5::timestamptz IS NULL OR q.created_at >= $5)
                     AND ($6::timestamptz IS NULL OR q.created_at < $6)
                   ORDER BY q.account_version
                   LIMIT $4
              ) p
              JOIN journal_entries e ON e.platform_id = $1 AND e.entry_id = p.entry_id
             ORDER BY p.posting_id
             LIMIT $4
            """,
            platform_id,
            list(account_ids),
            after,
            limit,
            since,
            until,
        )
        return [SellerPosting(**{f: r[f] for f in SellerPosting.__struct_fields__}) for r in rows]

    async def balances_before(self, platform_id: str, account_ids: Sequence[int], posting_id: int) -> dict[int, int]:
        """Each account's running balance just before posting ``posting_id`` (0 before its first)."""
        rows = await self.conn.fetch(
            """
            SELECT a.account_id,
                   coalesce((SELECT q.balance_after FROM postings q
                              WHERE q.platform_id = $1 AND q.account_id = a.account_id AND q.posting_id < $3
                              ORDER BY q.account_version DESC LIMIT 1), 0) AS balance
              FROM unnest($2::bigint[]) AS a(account_id)
            """,
            platform_id,
            list(account_ids),
            posting_id,
        )
        return {r["account_id"]: r["balance"] for r in rows}
