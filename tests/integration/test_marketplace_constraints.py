"""The marketplace tables defend themselves (migration 0005): raw SQL through asyncpg, no application code.

Each refusal is identified by SQLSTATE and constraint name, never message text, and comes after the
correct row of the same shape committed, so a refusal cannot come from a broken helper. A refused row
breaks exactly one constraint: PostgreSQL checks a table's CHECKs in name order, so a row breaking
two would be reported under whichever name comes first.

The rows are the shapes the application writes (ledger/orders.py, refunds.py, payouts.py,
settlement.py, api/notifications.py, api/payments.py, api/idempotency.py); the application is read
only for the codes it writes. Whether it keeps to these rules itself is shown by the whole suite
running with the constraints in place.
"""

from __future__ import annotations

import itertools
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from jenius import errors as jerrors
from ledger import settlement
from ledger.orders import CaptureResult
from ledger.store.driver import constraint_name
from migrations.runner import load_migrations, migrate

CHECK = "23514"
FOREIGN_KEY = "23503"

NOW = datetime(2024, 5, 3, 5, 0, tzinfo=UTC)
ENTRY = "@entry"  # an entry of p1, the platform every row is written on
OTHER_ENTRY = "@other_entry"  # an entry of p2: it exists, but on another platform

_ids = itertools.count(1)


# -- raw writes ---------------------------------------------------------------------------------


async def insert(conn: asyncpg.Connection, table: str, row: Mapping[str, Any]) -> None:
    """One row, one statement, committed on its own (deferred constraints are checked at its commit)."""
    columns = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({params})", *row.values())


async def post_entry(conn: asyncpg.Connection, platform: str, key: str) -> int:
    """A balanced entry (cash +1, capital -1) on ``platform``, written the way LedgerStore writes one."""
    async with conn.transaction():
        entry_id = await conn.fetchval(
            """
            INSERT INTO journal_entries (platform_id, kind, idempotency_key, content_hash, effective_at)
            VALUES ($1, 'test', $2, '\\x00'::bytea, now()) RETURNING entry_id
            """,
            platform,
            key,
        )
        await post_legs(conn, platform, entry_id)
    return entry_id


async def post_legs(conn: asyncpg.Connection, platform: str, entry_id: int) -> None:
    for code, amount in (("cash", 1), ("capital", -1)):
        acct = await conn.fetchrow(
            "SELECT account_id, normal_sign, balance, version FROM accounts "
            "WHERE platform_id = $1 AND code = $2 FOR UPDATE",
            platform,
            code,
        )
        balance, version = acct["balance"] + amount * acct["normal_sign"], acct["version"] + 1
        await conn.execute(
            """
            INSERT INTO postings (platform_id, entry_id, account_id, amount, currency, balance_after, account_version)
            VALUES ($1, $2, $3, $4, 'IDR', $5, $6)
            """,
            platform,
            entry_id,
            acct["account_id"],
            amount,
            balance,
            version,
        )
        await conn.execute(
            "UPDATE accounts SET balance = $3, version = $4 WHERE platform_id = $1 AND account_id = $2",
            platform,
            acct["account_id"],
            balance,
            version,
        )


async def open_platform(conn: asyncpg.Connection, platform: str) -> None:
    await conn.execute("INSERT INTO platforms (platform_id, name) VALUES ($1, $1)", platform)
    await conn.execute(
        "INSERT INTO accounts (platform_id, code, kind) VALUES ($1, 'cash', 'asset'), ($1, 'capital', 'equity')",
        platform,
    )
    await conn.execute("INSERT INTO sellers (platform_id, seller_id, name) VALUES ($1, 'alice', 'Alice')", platform)


# -- the rows the application writes ------------------------------------------------------------


def order(status: str = "created", **changes: Any) -> dict[str, Any]:
    n = next(_ids)
    return {
        "platform_id": "p1",
        "invoice_number": f"INV-{n}",
        "amount": 10_000,
        "status": status,
        "request": "{}",
        "policy": "{}",
        "allocation": "{}",
        "doku_request_id": f"pay-{n}",
        **changes,
    }


def captured_order(**changes: Any) -> dict[str, Any]:
    return order("captured", **{"capture_entry_id": ENTRY, "captured_at": NOW, **changes})


def refund(status: str = "requested", **changes: Any) -> dict[str, Any]:
    n = next(_ids)
    row = {
        "platform_id": "p1",
        "refund_id": f"rf-{n}",
        "invoice_number": "INV-CAPTURED",
        "amount": 1_000,
        "reason": "out of stock",
        "mode": "gateway",
        "doku_request_id": f"rf-{n}",
        "status": status,
    }
    if status == "succeeded":
        row |= {"entry_id": ENTRY, "reversal": "{}", "completed_at": NOW}
    elif status == "failed":
        row |= {"failure": '{"code": "rejected"}', "completed_at": NOW}
    return row | changes


def manual_refund(**changes: Any) -> dict[str, Any]:
    return refund("succeeded", mode="manual", doku_request_id=None, reference="BCA-TRF-0042") | changes


def payout(status: str = "pending", **changes: Any) -> dict[str, Any]:
    row = {
        "platform_id": "p1",
        "payout_id": f"po-{next(_ids)}",
        "seller_id": "alice",
        "amount": 1_000,
        "status": status,
        "request_entry_id": ENTRY,
    }
    if status in ("paid", "failed"):
        row |= {"completion_entry_id": ENTRY, "completed_at": NOW}
    if status == "failed":
        row |= {"failure_reason": "account closed"}
    return row | changes


def line(status: str = "booked", **changes: Any) -> dict[str, Any]:
    n = next(_ids)
    row = {
        "platform_id": "p1",
        "report_id": "sr-1",
        "line_no": n,
        "invoice_number": f"INV-{n}",
        "gross": 10_000,
        "fee": 150,
        "net": 9_850,
        "status": status,
    }
    row |= {"entry_id": ENTRY} if status == "booked" else {"detail": "unknown_invoice: no order"}
    return row | changes


def notification(outcome: str = "captured", **changes: Any) -> dict[str, Any]:
    return {"platform_id": "p1", "body": b"{}", "outcome": outcome, **changes}


def exception(kind: str = "unknown_invoice", source: str = "notification", **changes: Any) -> dict[str, Any]:
    return {"platform_id": "p1", "kind": kind, "source": source, "invoice_number": "INV-GHOST", **changes}


def idempotency_key(status: str = "in_progress", **changes: Any) -> dict[str, Any]:
    row = {"platform_id": "p1", "key": f"key-{next(_ids)}", "request_hash": b"\x01", "status": status}
    if status == "done":
        row |= {"response_status": 201, "response_body": b"{}"}
    return row | changes


@dataclass(frozen=True)
class World:
    entry: int
    other_entry: int

    def resolve(self, row: Mapping[str, Any]) -> dict[str, Any]:
        names = {ENTRY: self.entry, OTHER_ENTRY: self.other_entry}
        return {k: names.get(v, v) if isinstance(v, str) else v for k, v in row.items()}


async def build_world(conn: asyncpg.Connection) -> World:
    """Platforms p1 and p2 (accounts, seller alice), an entry on each, a captured order, a report on p1."""
    await open_platform(conn, "p1")
    await open_platform(conn, "p2")
    w = World(entry=await post_entry(conn, "p1", "e-p1"), other_entry=await post_entry(conn, "p2", "e-p2"))
    await insert(conn, "orders", w.resolve(captured_order(invoice_number="INV-CAPTURED")))
    await conn.execute(
        "INSERT INTO settlement_reports (platform_id, report_id, source_name, content_hash, line_count, summary) "
        "VALUES ('p1', 'sr-1', 'r.csv', '\\x01'::bytea, 0, '{}')"
    )
    return w


@pytest.fixture
async def world(conn: asyncpg.Connection) -> World:
    return await build_world(conn)


# -- every refusal ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    constraint: str
    why: str
    sqlstate: str
    table: str
    good: Any  # () -> row: the shape the application writes
    bad: Any  # () -> row: the same shape, broken in one place


R = Refusal
# One refusal per entry, laid out as a table: constraint, which break, SQLSTATE, table, good row, bad row.
# fmt: off
REFUSALS = [
    # foreign keys: an entry id names an entry of the row's own platform
    R("orders_capture_entry_fkey", "another-platforms-entry", FOREIGN_KEY, "orders", captured_order,
      lambda: captured_order(capture_entry_id=OTHER_ENTRY)),
    R("orders_settlement_entry_fkey", "another-platforms-entry", FOREIGN_KEY, "orders",
      lambda: captured_order(settled_at=NOW, settlement_entry_id=ENTRY),
      lambda: captured_order(settled_at=NOW, settlement_entry_id=OTHER_ENTRY)),
    R("refunds_entry_fkey", "another-platforms-entry", FOREIGN_KEY, "refunds", lambda: refund("succeeded"),
      lambda: refund("succeeded", entry_id=OTHER_ENTRY)),
    R("payouts_request_entry_fkey", "another-platforms-entry", FOREIGN_KEY, "payouts", payout,
      lambda: payout(request_entry_id=OTHER_ENTRY)),
    R("payouts_completion_entry_fkey", "another-platforms-entry", FOREIGN_KEY, "payouts", lambda: payout("paid"),
      lambda: payout("paid", completion_entry_id=OTHER_ENTRY)),
    R("settlement_lines_entry_fkey", "another-platforms-entry", FOREIGN_KEY, "settlement_lines", line,
      lambda: line(entry_id=OTHER_ENTRY)),
    R("notifications_platform_id_fkey", "unknown-platform", FOREIGN_KEY, "notifications", notification,
      lambda: notification(platform_id="nowhere")),
    # orders
    R("orders_capture_matches_status", "captured-without-entry", CHECK, "orders", captured_order,
      lambda: order("captured", captured_at=NOW)),
    R("orders_capture_matches_status", "captured-without-time", CHECK, "orders", captured_order,
      lambda: order("captured", capture_entry_id=ENTRY)),
    R("orders_capture_matches_status", "pending-with-entry", CHECK, "orders", lambda: order("pending"),
      lambda: order("pending", capture_entry_id=ENTRY, captured_at=NOW)),
    R("orders_capture_matches_status", "expired-with-time", CHECK, "orders", lambda: order("expired"),
      lambda: order("expired", captured_at=NOW)),
    R("orders_settlement_complete", "settled-without-entry", CHECK, "orders",
      lambda: captured_order(settled_at=NOW, settlement_entry_id=ENTRY), lambda: captured_order(settled_at=NOW)),
    R("orders_settlement_complete", "entry-without-time", CHECK, "orders",
      lambda: captured_order(settled_at=NOW, settlement_entry_id=ENTRY),
      lambda: captured_order(settlement_entry_id=ENTRY)),
    R("orders_settled_only_if_captured", "pending-settled", CHECK, "orders", lambda: order("pending"),
      lambda: order("pending", settled_at=NOW, settlement_entry_id=ENTRY)),
    R("orders_refunds_only_if_captured", "failed-with-reservation", CHECK, "orders",
      lambda: captured_order(refund_reserved=1_000), lambda: order("failed", refund_reserved=1_000)),
    # refunds
    R("refunds_entry_matches_status", "succeeded-without-entry", CHECK, "refunds", lambda: refund("succeeded"),
      lambda: refund("succeeded", entry_id=None)),
    R("refunds_entry_matches_status", "succeeded-without-reversal", CHECK, "refunds", lambda: refund("succeeded"),
      lambda: refund("succeeded", reversal=None)),
    R("refunds_entry_matches_status", "failed-with-entry", CHECK, "refunds", lambda: refund("failed"),
      lambda: refund("failed", entry_id=ENTRY)),
    R("refunds_entry_matches_status", "requested-with-reversal", CHECK, "refunds", refund,
      lambda: refund(reversal="{}")),
    R("refunds_failure_matches_status", "failed-without-failure", CHECK, "refunds", lambda: refund("failed"),
      lambda: refund("failed", failure=None)),
    R("refunds_failure_matches_status", "succeeded-with-failure", CHECK, "refunds", lambda: refund("succeeded"),
      lambda: refund("succeeded", failure="{}")),
    R("refunds_completed_at_matches_status", "succeeded-without-time", CHECK, "refunds", lambda: refund("succeeded"),
      lambda: refund("succeeded", completed_at=None)),
    R("refunds_completed_at_matches_status", "requested-with-time", CHECK, "refunds", refund,
      lambda: refund(completed_at=NOW)),
    R("refunds_doku_request_id_matches_mode", "gateway-without-request-id", CHECK, "refunds", refund,
      lambda: refund(doku_request_id=None)),
    R("refunds_doku_request_id_matches_mode", "manual-with-request-id", CHECK, "refunds", manual_refund,
      lambda: manual_refund(doku_request_id="rf-manual")),
    # payouts
    R("payouts_completion_complete", "entry-without-time", CHECK, "payouts", lambda: payout("paid"),
      lambda: payout("paid", completed_at=None)),
    R("payouts_completion_complete", "time-without-entry", CHECK, "payouts", lambda: payout("paid"),
      lambda: payout("paid", completion_entry_id=None)),
    R("payouts_pending_not_completed", "pending-with-completion", CHECK, "payouts", payout,
      lambda: payout(completion_entry_id=ENTRY, completed_at=NOW)),
    R("payouts_failed_completed", "failed-without-completion", CHECK, "payouts", lambda: payout("failed"),
      lambda: payout("failed", completion_entry_id=None, completed_at=None)),
    R("payouts_failure_reason_matches_status", "failed-without-reason", CHECK, "payouts", lambda: payout("failed"),
      lambda: payout("failed", failure_reason=None)),
    R("payouts_failure_reason_matches_status", "paid-with-reason", CHECK, "payouts", lambda: payout("paid"),
      lambda: payout("paid", failure_reason="account closed")),
    # settlement lines
    R("settlement_lines_entry_matches_status", "booked-without-entry", CHECK, "settlement_lines", line,
      lambda: line(entry_id=None)),
    R("settlement_lines_entry_matches_status", "exception-with-entry", CHECK, "settlement_lines",
      lambda: line("exception"), lambda: line("exception", entry_id=ENTRY)),
    R("settlement_lines_detail_matches_status", "exception-without-detail", CHECK, "settlement_lines",
      lambda: line("exception"), lambda: line("exception", detail=None)),
    R("settlement_lines_detail_matches_status", "booked-with-detail", CHECK, "settlement_lines", line,
      lambda: line(detail="booked anyway")),
    R("settlement_lines_booked_line_complete", "net-not-gross-minus-fee", CHECK, "settlement_lines", line,
      lambda: line(net=9_851)),
    R("settlement_lines_booked_line_complete", "no-invoice", CHECK, "settlement_lines", line,
      lambda: line(invoice_number=None)),
    R("settlement_lines_booked_line_complete", "no-fee", CHECK, "settlement_lines", line, lambda: line(fee=None)),
    R("settlement_lines_booked_line_complete", "zero-gross", CHECK, "settlement_lines", line,
      lambda: line(gross=0, fee=0, net=0)),
    R("settlement_lines_booked_line_complete", "negative-fee", CHECK, "settlement_lines", line,
      lambda: line(gross=10_000, fee=-1, net=10_001)),
    # enumerations
    R("notifications_outcome_valid", "unknown-outcome", CHECK, "notifications", notification,
      lambda: notification("Captured")),
    R("reconciliation_exceptions_kind_valid", "unknown-kind", CHECK, "reconciliation_exceptions", exception,
      lambda: exception("something_odd")),
    R("reconciliation_exceptions_source_valid", "unknown-source", CHECK, "reconciliation_exceptions", exception,
      lambda: exception(source="api")),
    # idempotency keys
    R("idempotency_keys_done_has_response", "done-without-body", CHECK, "idempotency_keys",
      lambda: idempotency_key("done"), lambda: idempotency_key("done", response_body=None)),
    R("idempotency_keys_done_has_response", "done-without-status", CHECK, "idempotency_keys",
      lambda: idempotency_key("done"), lambda: idempotency_key("done", response_status=None)),
]
# fmt: on


@pytest.mark.parametrize("refusal", REFUSALS, ids=[f"{r.constraint}:{r.why}" for r in REFUSALS])
async def test_the_database_refuses_a_marketplace_row_that_breaks_its_invariant(conn, world, refusal):
    before = await conn.fetchval(f"SELECT count(*) FROM {refusal.table}")
    await insert(conn, refusal.table, world.resolve(refusal.good()))
    with pytest.raises(asyncpg.PostgresError) as raised:
        await insert(conn, refusal.table, world.resolve(refusal.bad()))
    assert (raised.value.sqlstate, constraint_name(raised.value)) == (refusal.sqlstate, refusal.constraint)
    assert await conn.fetchval(f"SELECT count(*) FROM {refusal.table}") == before + 1


async def test_a_status_change_that_skips_its_entry_is_refused_too(conn, world):
    """The checks hold for updates as for inserts: an order cannot be marked captured by status alone."""
    row = world.resolve(order("pending"))
    await insert(conn, "orders", row)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.execute("UPDATE orders SET status = 'captured' WHERE invoice_number = $1", row["invoice_number"])
    assert (raised.value.sqlstate, constraint_name(raised.value)) == (CHECK, "orders_capture_matches_status")
    await conn.execute(
        "UPDATE orders SET status = 'captured', capture_entry_id = $2, captured_at = now() WHERE invoice_number = $1",
        row["invoice_number"],
        world.entry,
    )
    status = await conn.fetchval("SELECT status FROM orders WHERE invoice_number = $1", row["invoice_number"])
    assert status == "captured"


async def test_an_entry_may_be_posted_after_the_row_naming_it_within_one_transaction(conn, world):
    """The entry foreign keys are checked at commit, like the ledger's own balance checks."""
    async with conn.transaction():
        entry_id = 1 + await conn.fetchval("SELECT max(entry_id) FROM journal_entries")
        await insert(conn, "refunds", world.resolve(refund("succeeded", entry_id=entry_id)))
        await conn.execute(
            """
            INSERT INTO journal_entries (platform_id, entry_id, kind, idempotency_key, content_hash, effective_at)
            OVERRIDING SYSTEM VALUE VALUES ('p1', $1, 'refund', 'late', '\\x00'::bytea, now())
            """,
            entry_id,
        )
        await post_legs(conn, "p1", entry_id)
    assert await conn.fetchval("SELECT count(*) FROM refunds WHERE entry_id = $1", entry_id) == 1


async def test_an_entry_that_never_comes_is_refused_at_commit_not_before(conn, world):
    tx = conn.transaction()
    await tx.start()
    missing = 1 + await conn.fetchval("SELECT max(entry_id) FROM journal_entries")
    await insert(conn, "refunds", world.resolve(refund("succeeded", entry_id=missing)))  # accepted for now
    with pytest.raises(asyncpg.PostgresError) as raised:
        await tx.commit()
    assert (raised.value.sqlstate, constraint_name(raised.value)) == (FOREIGN_KEY, "refunds_entry_fkey")
    assert await conn.fetchval("SELECT count(*) FROM refunds WHERE entry_id = $1", missing) == 0


# -- every value the application writes is accepted ---------------------------------------------

CAPTURE_OUTCOMES = typing.get_args(typing.get_type_hints(CaptureResult)["outcome"])


def _error_codes(cls: type[jerrors.JeniusError]) -> set[str]:
    return {cls.code}.union(*(_error_codes(sub) for sub in cls.__subclasses__()))


JENIUS_CODES = sorted(_error_codes(jerrors.JeniusError))
# apply_transaction_status (api/payments.py): the capture outcomes, "closed" for FAILED/EXPIRED/TIMEOUT,
# "ignored" for any other status; a delivery refused by verification keeps its JeniusError's code.
NOTIFICATION_OUTCOMES = sorted({*CAPTURE_OUTCOMES, "closed", "ignored", *JENIUS_CODES})
# Exception kinds: every settlement kind, and the capture outcomes api/payments.py records.
EXCEPTION_KINDS = sorted({*settlement.EXCEPTION_KINDS, "amount_mismatch", "unknown_invoice"})
EXCEPTION_SOURCES = [settlement.SOURCE, "notification", "status_check"]


def test_the_code_lists_its_values_where_the_tests_read_them():
    """Guards the lists below against reading nothing (a renamed constant would make them vacuous)."""
    assert {"captured", "duplicate", "amount_mismatch", "unknown_invoice"} <= set(CAPTURE_OUTCOMES)
    assert {"invalid_signature", "stale_timestamp", "malformed_message"} <= set(JENIUS_CODES)
    assert len(settlement.EXCEPTION_KINDS) >= 8 and settlement.SOURCE == "settlement_report"


async def refused_values(conn: asyncpg.Connection, table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    refused = []
    for row in rows:
        try:
            await insert(conn, table, row)
        except asyncpg.CheckViolationError:
            refused.append(row)
    return refused


async def test_every_notification_outcome_the_code_writes_is_accepted(conn, world):
    rows = [notification(outcome) for outcome in NOTIFICATION_OUTCOMES]
    assert await refused_values(conn, "notifications", rows) == []
    assert await conn.fetchval("SELECT count(DISTINCT outcome) FROM notifications") == len(NOTIFICATION_OUTCOMES)


async def test_every_exception_kind_and_source_the_code_writes_is_accepted(conn, world):
    rows = [exception(kind, source) for kind in EXCEPTION_KINDS for source in EXCEPTION_SOURCES]
    assert await refused_values(conn, "reconciliation_exceptions", rows) == []
    assert await conn.fetchval("SELECT count(*) FROM reconciliation_exceptions") == len(rows)


# -- the migration on a database that already has rows -----------------------------------------

MIGRATION = "0005_marketplace_defends_itself.sql"
_SQL = next(m.sql for m in load_migrations() if m.name == MIGRATION)
ADDED = re.findall(r"ADD CONSTRAINT (\w+)", re.sub(r"--[^\n]*", "", _SQL))  # comments may name examples


def test_every_constraint_the_migration_adds_has_a_refusal_here():
    assert len(ADDED) == len(set(ADDED)) > 0
    assert sorted(set(ADDED)) == sorted({r.constraint for r in REFUSALS})


async def migrate_to_before_0005(conn: asyncpg.Connection) -> None:
    await migrate(conn, [m for m in load_migrations() if m.version < 5])


async def write_every_state(conn: asyncpg.Connection, w: World) -> None:
    """One row of every state the application leaves the marketplace tables in."""
    rows = {
        "orders": [
            order(),
            order("send_failed"),
            order("pending"),
            order("failed"),
            order("expired"),
            captured_order(refund_reserved=3_000, refunded_amount=1_000, reversed="{}"),
            captured_order(settled_at=NOW, settlement_entry_id=ENTRY),
        ],
        "refunds": [
            refund(),
            refund("succeeded"),
            refund("failed"),
            manual_refund(),
            refund(mode="manual", doku_request_id=None),
        ],
        "payouts": [payout(), payout("paid"), payout("failed")],
        "settlement_lines": [
            line(),
            line("exception"),
            line(
                "exception",
                invoice_number=None,
                gross=None,
                fee=None,
                net=None,
                detail="invalid_line: invoice_number: missing",
            ),
        ],
        # The values the code wrote when 0005 was written (later migrations extend the lists).
        "notifications": [notification(o) for o in NOTIFICATION_OUTCOMES if f"'{o}'" in _SQL],
        "reconciliation_exceptions": [
            exception(k, s) for k in EXCEPTION_KINDS for s in EXCEPTION_SOURCES if f"'{k}'" in _SQL
        ],
        "idempotency_keys": [idempotency_key(), idempotency_key("done")],
    }
    for table, table_rows in rows.items():
        for row in table_rows:
            await insert(conn, table, w.resolve(row))


async def test_the_migration_applies_to_a_database_whose_rows_keep_the_rules(empty_database_url):
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate_to_before_0005(conn)
        await write_every_state(conn, await build_world(conn))

        assert MIGRATION in await migrate(conn)
        names = await conn.fetch("SELECT conname FROM pg_constraint WHERE conname = ANY($1::text[])", ADDED)
        assert sorted(r["conname"] for r in names) == sorted(ADDED)
    finally:
        await conn.close()


async def test_the_migration_refuses_a_database_whose_rows_break_the_rules_and_changes_nothing(empty_database_url):
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate_to_before_0005(conn)
        await open_platform(conn, "p1")
        await insert(conn, "orders", order("captured", captured_at=NOW))  # captured without an entry

        with pytest.raises(asyncpg.PostgresError) as raised:
            await migrate(conn)
        assert (raised.value.sqlstate, constraint_name(raised.value)) == (CHECK, "orders_capture_matches_status")
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE name = $1", MIGRATION) == 0
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_constraint WHERE conname = 'orders_capture_entry_fkey'") == 0
        )
    finally:
        await conn.close()
