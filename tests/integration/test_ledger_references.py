"""The ledger's references, defended set-based (migration 0010) as the foreign keys they replace
did: raw SQL through asyncpg, refusals identified by SQLSTATE and constraint name, each with a twin
that does the allowed thing and sees it succeed."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.integration.test_db_invariants import (
    CHECK,
    FEATURE_NOT_SUPPORTED,
    FOREIGN_KEY,
    RESTRICT,
    assert_refused,
    count,
    ids,
    insert_entry,
    insert_posting,
    post,
)

__all__ = ["ids"]  # the fixture, shared with the invariant tests


async def test_an_entry_of_an_unknown_platform_is_refused(conn, ids):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await insert_entry(conn, "k1", platform="nobody")
    assert_refused(raised.value, FOREIGN_KEY, "journal_entries_platform_id_fkey")
    await post(conn, ids, "k1", [("cash", 1), ("capital", -1)])  # a known platform's entry commits


async def test_an_account_with_postings_cannot_be_deleted_one_without_can(conn, ids):
    await post(conn, ids, "k1", [("cash", 100), ("capital", -100)])
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.execute("DELETE FROM accounts WHERE platform_id = 'p1' AND code = 'cash'")
    assert_refused(raised.value, FOREIGN_KEY, "postings_account_exists")
    assert await conn.execute("DELETE FROM accounts WHERE platform_id = 'p1' AND code = 'seller'") == "DELETE 1"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE accounts SET platform_id = 'p2' WHERE platform_id = 'p1' AND code = 'seller'",
        "UPDATE accounts SET account_id = DEFAULT WHERE platform_id = 'p1' AND code = 'seller'",
    ],
    ids=["platform", "id"],
)
async def test_an_account_keeps_its_key(conn, ids, statement, postgres):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.execute(statement)
    if postgres.citus:
        # Citus refuses both itself, before any shard sees them: a distribution column never
        # changes, nor a column set from a sequence in an UPDATE (and the foreign keys it keeps
        # refuse a new key for an account with postings).
        assert raised.value.sqlstate == FEATURE_NOT_SUPPORTED
        assert (
            await conn.fetchval("SELECT platform_id FROM accounts WHERE account_id = $1", ids["p1", "seller"]) == "p1"
        )
    else:
        assert_refused(raised.value, RESTRICT, "accounts_key_fixed")
    await conn.execute("UPDATE accounts SET metadata = '{\"x\": 1}' WHERE platform_id = 'p1' AND code = 'seller'")


async def test_accounts_cannot_be_truncated(conn, ids, postgres):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.execute("TRUNCATE accounts")
    if postgres.citus:
        # Citus refuses to truncate a table a foreign key references (postings → accounts).
        assert raised.value.sqlstate == FEATURE_NOT_SUPPORTED
    else:
        assert_refused(raised.value, RESTRICT, "postings_append_only")
    assert await count(conn, "accounts") == 6


async def test_a_delete_racing_a_posting_waits_for_it_and_is_refused(database_url, conn, ids):
    """The posting's account is locked as a foreign key would lock it, from the posting's insert
    to its commit: a concurrent delete of the account waits, then sees the posting and is refused."""
    other = await asyncpg.connect(database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        entry_id = await insert_entry(conn, "k1")
        await insert_posting(conn, entry_id, ids["p1", "seller"], -100, update_account=False)
        delete = asyncio.create_task(other.execute("DELETE FROM accounts WHERE platform_id = 'p1' AND code = 'seller'"))
        await asyncio.sleep(0.3)
        assert not delete.done(), "the delete must wait for the posting's transaction"
        await conn.execute("UPDATE accounts SET balance = 100, version = 1 WHERE account_id = $1", ids["p1", "seller"])
        await insert_posting(conn, entry_id, ids["p1", "capital"], 100)
        await tx.commit()
        with pytest.raises(asyncpg.PostgresError) as raised:
            await asyncio.wait_for(delete, timeout=10)
        assert_refused(raised.value, FOREIGN_KEY, "postings_account_exists")
    finally:
        await other.close()
    assert await conn.fetchval("SELECT balance FROM accounts WHERE account_id = $1", ids["p1", "seller"]) == 100


async def test_postings_across_statements_and_savepoints_are_checked_like_one_statement(conn, ids):
    """The worklist a transaction builds statement by statement (rolled back with its savepoints)
    sees the whole transaction at commit."""
    async with conn.transaction():
        entry_id = await insert_entry(conn, "k1")
        await insert_posting(conn, entry_id, ids["p1", "cash"], 100)
        with pytest.raises(asyncpg.PostgresError):
            async with conn.transaction():  # a savepoint that fails and is rolled back
                await insert_posting(conn, entry_id, ids["p1", "capital"], -100, version=5)
        await insert_posting(conn, entry_id, ids["p1", "capital"], -100)
    assert await count(conn, "postings") == 2
    tx = conn.transaction()
    await tx.start()
    entry_id = await insert_entry(conn, "k2")
    await insert_posting(conn, entry_id, ids["p1", "cash"], 50)
    async with conn.transaction():
        await insert_posting(conn, entry_id, ids["p1", "capital"], -49)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await tx.commit()
    assert_refused(raised.value, CHECK, "journal_entries_balanced")
