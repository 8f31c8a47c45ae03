"""Migration 0006: a settlement line's exception kind is a column, backfilled from the lines already
stored, and the database refuses a kind on a booked line or a kind the code never writes."""

from __future__ import annotations

import asyncpg
import pytest

from ledger import settlement
from ledger.store.driver import constraint_name
from migrations.runner import load_migrations, migrate

CHECK = "23514"


async def _lines_before_0006(conn: asyncpg.Connection) -> int:
    """A database migrated up to 0005 with one booked line and two exception lines; returns the entry id."""
    await migrate(conn, [m for m in load_migrations() if m.version < 6])
    await conn.execute("INSERT INTO platforms (platform_id, name) VALUES ('p1', 'p1')")
    await conn.execute(
        "INSERT INTO accounts (platform_id, code, kind) VALUES ('p1', 'cash', 'asset'), ('p1', 'capital', 'equity')"
    )
    async with conn.transaction():
        entry_id: int = await conn.fetchval(
            """
            INSERT INTO journal_entries (platform_id, kind, idempotency_key, content_hash, effective_at)
            VALUES ('p1', 'test', 'e-1', '\\x00'::bytea, now()) RETURNING entry_id
            """
        )
        for code, amount in (("cash", 1), ("capital", -1)):  # balanced, as the ledger writes an entry
            acct = await conn.fetchrow(
                "SELECT account_id, normal_sign FROM accounts WHERE platform_id = 'p1' AND code = $1", code
            )
            balance = amount * acct["normal_sign"]
            await conn.execute(
                """
                INSERT INTO postings (platform_id, entry_id, account_id, amount, currency, balance_after,
                                      account_version)
                VALUES ('p1', $1, $2, $3, 'IDR', $4, 1)
                """,
                entry_id, acct["account_id"], amount, balance,
            )  # fmt: skip
            await conn.execute(
                "UPDATE accounts SET balance = $2, version = 1 WHERE platform_id = 'p1' AND account_id = $1",
                acct["account_id"], balance,
            )  # fmt: skip
    await conn.execute(
        "INSERT INTO settlement_reports (platform_id, report_id, source_name, content_hash, line_count, summary) "
        "VALUES ('p1', 'sr-1', 'r.csv', '\\x01'::bytea, 3, '{}')"
    )
    await conn.execute(
        """
        INSERT INTO settlement_lines (platform_id, report_id, line_no, invoice_number, gross, fee, net, status,
                                      entry_id, detail)
        VALUES ('p1', 'sr-1', 1, 'INV-1', 10000, 150, 9850, 'booked', $1, NULL),
               ('p1', 'sr-1', 2, 'INV-X', 10000, 150, 9850, 'exception', NULL, 'unknown_invoice: no order ''INV-X'''),
               ('p1', 'sr-1', 3, NULL, NULL, NULL, NULL, 'exception', NULL,
                'invalid_line: invoice_number: missing; gross: missing')
        """,
        entry_id,
    )
    return entry_id


async def test_existing_lines_get_their_kind_from_their_detail(empty_database_url):
    conn = await asyncpg.connect(empty_database_url)
    try:
        await _lines_before_0006(conn)

        assert "0006_settlement_line_kind.sql" in await migrate(conn)

        rows = await conn.fetch("SELECT line_no, exception_kind FROM settlement_lines ORDER BY line_no")
        assert [tuple(r) for r in rows] == [(1, None), (2, "unknown_invoice"), (3, "invalid_line")]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("status", "kind", "constraint"),
    [
        ("booked", "unknown_invoice", "settlement_lines_exception_kind_only_on_exceptions"),
        ("exception", "something_odd", "settlement_lines_exception_kind_valid"),
    ],
)
async def test_the_database_refuses_a_kind_the_code_would_never_write(empty_database_url, status, kind, constraint):
    conn = await asyncpg.connect(empty_database_url)
    try:
        entry_id = await _lines_before_0006(conn)
        await migrate(conn)
        booked = status == "booked"

        async def line(line_no: int, exception_kind: str | None) -> None:
            await conn.execute(
                """
                INSERT INTO settlement_lines (platform_id, report_id, line_no, invoice_number, gross, fee, net,
                                              status, entry_id, detail, exception_kind)
                VALUES ('p1', 'sr-1', $1, $2, 10000, 150, 9850, $3, $4, $5, $6)
                """,
                line_no, f"INV-{line_no}", status, entry_id if booked else None,
                None if booked else f"{kind}: why", exception_kind,
            )  # fmt: skip

        await line(4, None if booked else "unknown_invoice")  # the same line as the code writes it is fine
        with pytest.raises(asyncpg.PostgresError) as raised:
            await line(5, kind)
        assert (raised.value.sqlstate, constraint_name(raised.value)) == (CHECK, constraint)
    finally:
        await conn.close()


def test_the_kinds_the_database_accepts_are_the_codes_kinds():
    # 0020 lists the kinds again with the line types' own (0006's list is the first eight).
    assert all(
        f"'{kind}'" in next(m.sql for m in load_migrations() if m.version == 6)
        for kind in settlement.EXCEPTION_KINDS[:8]
    )
    sql = next(m.sql for m in load_migrations() if m.version == 20)
    assert all(f"'{kind}'" in sql for kind in settlement.EXCEPTION_KINDS)
