"""The database defends the ledger by itself: raw SQL through asyncpg, no Python ledger code.

Each refusal is identified by SQLSTATE and constraint name (never message text). Every refusal
test has a twin that writes the same thing correctly and sees it commit, so a refusal cannot come
from a broken helper.
"""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest

from ledger.store.driver import constraint_name
from migrations.runner import Migration, MigrationChecksumMismatch, load_migrations, migrate

CHECK = "23514"
RESTRICT = "23001"
FOREIGN_KEY = "23503"
UNIQUE = "23505"
FEATURE_NOT_SUPPORTED = "0A000"

ACCOUNTS = [
    # platform, code, kind, currency, allow_negative
    ("p1", "cash", "asset", "IDR", False),
    ("p1", "seller", "liability", "IDR", False),
    ("p1", "capital", "equity", "IDR", True),
    ("p1", "usd_cash", "asset", "USD", False),
    ("p1", "usd_capital", "equity", "USD", True),
    ("p2", "cash", "asset", "IDR", False),
]


@pytest.fixture
async def ids(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    await conn.execute("INSERT INTO platforms (platform_id, name) VALUES ('p1', 'P1'), ('p2', 'P2')")
    await conn.executemany(
        "INSERT INTO accounts (platform_id, code, kind, currency, allow_negative) VALUES ($1, $2, $3, $4, $5)",
        ACCOUNTS,
    )
    rows = await conn.fetch("SELECT platform_id, code, account_id FROM accounts")
    return {(r["platform_id"], r["code"]): r["account_id"] for r in rows}


async def insert_entry(conn: asyncpg.Connection, key: str, *, platform: str = "p1", multi: bool = False) -> int:
    return await conn.fetchval(
        """
        INSERT INTO journal_entries (platform_id, kind, idempotency_key, content_hash, multi_currency, effective_at)
        VALUES ($1, 'test', $2, '\\x00'::bytea, $3, now()) RETURNING entry_id
        """,
        platform,
        key,
        multi,
    )


async def insert_posting(
    conn: asyncpg.Connection,
    entry_id: int,
    account_id: int,
    amount: int,
    *,
    platform: str = "p1",
    currency: str | None = None,
    balance_after: int | None = None,
    version: int | None = None,
    update_account: bool = True,
) -> None:
    """Insert one posting continuing the account's running balance, unless told otherwise."""
    acct = await conn.fetchrow(
        "SELECT currency, normal_sign, balance, version FROM accounts WHERE account_id = $1", account_id
    )
    balance_after = acct["balance"] + amount * acct["normal_sign"] if balance_after is None else balance_after
    version = acct["version"] + 1 if version is None else version
    await conn.execute(
        """
        INSERT INTO postings (platform_id, entry_id, account_id, amount, currency, balance_after, account_version)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        platform,
        entry_id,
        account_id,
        amount,
        currency or acct["currency"],
        balance_after,
        version,
    )
    if update_account:
        await conn.execute(
            "UPDATE accounts SET balance = $2, version = $3 WHERE account_id = $1", account_id, balance_after, version
        )


async def post(conn: asyncpg.Connection, ids, key: str, legs: list[tuple[str, int]], *, multi: bool = False) -> int:
    """A correct entry on platform p1, committed."""
    async with conn.transaction():
        entry_id = await insert_entry(conn, key, multi=multi)
        for code, amount in legs:
            await insert_posting(conn, entry_id, ids["p1", code], amount)
    return entry_id


async def count(conn: asyncpg.Connection, table: str) -> int:
    return await conn.fetchval(f"SELECT count(*) FROM {table}")


def assert_refused(exc: asyncpg.PostgresError, sqlstate: str, constraint: str) -> None:
    assert (exc.sqlstate, constraint_name(exc)) == (sqlstate, constraint)


# -- positive controls --------------------------------------------------------------------------


async def test_a_correct_entry_written_by_hand_commits(conn, ids):
    await post(conn, ids, "k1", [("cash", 500), ("capital", -500)])
    await post(conn, ids, "k2", [("seller", -200), ("cash", 200), ("capital", 100), ("cash", -100)])
    balances = dict(await conn.fetch("SELECT code, balance FROM accounts WHERE platform_id = 'p1'"))
    assert balances == {"cash": 600, "seller": 200, "capital": 400, "usd_cash": 0, "usd_capital": 0}
    assert (await count(conn, "journal_entries"), await count(conn, "postings")) == (2, 6)


# -- every entry balances, with at least two postings ------------------------------------------


async def test_an_unbalanced_entry_is_refused_at_commit_not_before(conn, ids):
    tx = conn.transaction()
    await tx.start()
    entry_id = await insert_entry(conn, "k1")
    await insert_posting(conn, entry_id, ids["p1", "cash"], 100)
    await insert_posting(conn, entry_id, ids["p1", "capital"], -99)  # every statement so far succeeded
    with pytest.raises(asyncpg.PostgresError) as raised:
        await tx.commit()
    assert_refused(raised.value, CHECK, "journal_entries_balanced")
    assert await count(conn, "journal_entries") == 0
    assert await count(conn, "postings") == 0


@pytest.mark.parametrize("legs", [[("capital", 100)], []], ids=["one-posting", "no-postings"])
async def test_an_entry_needs_two_postings(conn, ids, legs):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await post(conn, ids, "k1", legs)
    assert_refused(raised.value, CHECK, "journal_entries_has_postings")
    assert await count(conn, "journal_entries") == 0


async def test_a_posting_added_later_to_a_committed_entry_must_keep_it_balanced(conn, ids):
    entry_id = await post(conn, ids, "k1", [("cash", 100), ("capital", -100)])
    with pytest.raises(asyncpg.PostgresError) as raised:
        async with conn.transaction():
            await insert_posting(conn, entry_id, ids["p1", "capital"], -5)
    assert_refused(raised.value, CHECK, "journal_entries_balanced")


async def test_a_zero_posting_is_refused(conn, ids):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await post(conn, ids, "k1", [("cash", 100), ("capital", -100), ("capital", 0)])
    assert_refused(raised.value, CHECK, "postings_amount_nonzero")


# -- append-only --------------------------------------------------------------------------------

APPEND_ONLY = [
    ("UPDATE postings SET amount = amount", "postings_append_only"),
    ("UPDATE postings SET created_at = created_at - interval '1 day'", "postings_append_only"),
    ("UPDATE postings SET created_at = '2000-01-01T00:00:00Z'", "postings_append_only"),
    ("DELETE FROM postings", "postings_append_only"),
    ("TRUNCATE postings", "postings_append_only"),
    ("UPDATE journal_entries SET kind = 'other'", "journal_entries_append_only"),
    ("DELETE FROM journal_entries", "journal_entries_append_only"),
    ("TRUNCATE journal_entries CASCADE", "journal_entries_append_only"),
    ("TRUNCATE accounts CASCADE", "journal_entries_append_only"),
]


@pytest.mark.parametrize(("statement", "constraint"), APPEND_ONLY, ids=[s for s, _ in APPEND_ONLY])
async def test_postings_and_entries_are_append_only(conn, ids, statement, constraint, postgres):
    await post(conn, ids, "k1", [("cash", 100), ("capital", -100)])
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.execute(statement)
    if postgres.citus and "interval" in statement:
        # Citus refuses this one itself, before any shard sees it (a STABLE function of a column in
        # an UPDATE); the same change written with a constant reaches the trigger (the next case).
        assert raised.value.sqlstate == FEATURE_NOT_SUPPORTED
        assert (await count(conn, "journal_entries"), await count(conn, "postings")) == (1, 2)
        return
    assert raised.value.sqlstate == RESTRICT
    # a cascading TRUNCATE may trip either table's trigger first; both name an append-only table
    assert constraint_name(raised.value) in (constraint, "postings_append_only", "journal_entries_append_only")
    if not statement.startswith("TRUNCATE"):
        assert constraint_name(raised.value) == constraint
    assert (await count(conn, "journal_entries"), await count(conn, "postings")) == (1, 2)


# -- running balances and overdrafts ------------------------------------------------------------


async def test_a_posting_that_overdraws_a_non_negative_account_is_refused(conn, ids):
    await post(conn, ids, "k1", [("cash", 100), ("capital", -100)])
    with pytest.raises(asyncpg.PostgresError) as raised:
        await post(conn, ids, "k2", [("cash", -101), ("capital", 101)])
    assert_refused(raised.value, CHECK, "postings_balance_non_negative")
    await post(conn, ids, "k3", [("cash", -100), ("capital", 100)])  # down to exactly zero is fine
    assert await conn.fetchval("SELECT balance FROM accounts WHERE code = 'cash' AND platform_id = 'p1'") == 0


async def test_a_liability_debited_below_zero_is_refused(conn, ids):
    # a seller's payable never flips into a receivable: the check is in the normal direction
    await post(conn, ids, "k1", [("capital", 50), ("seller", -50)])
    with pytest.raises(asyncpg.PostgresError) as raised:
        await post(conn, ids, "k2", [("seller", 51), ("capital", -51)])
    assert_refused(raised.value, CHECK, "postings_balance_non_negative")


async def test_an_account_balance_below_zero_is_refused(conn, ids):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.execute("UPDATE accounts SET balance = -1 WHERE code = 'cash' AND platform_id = 'p1'")
    assert_refused(raised.value, CHECK, "accounts_balance_non_negative")


async def test_the_negative_allowed_account_may_go_negative(conn, ids):
    await post(conn, ids, "k1", [("cash", 100), ("capital", -100)])
    assert await conn.fetchval("SELECT balance FROM accounts WHERE code = 'capital' AND platform_id = 'p1'") == 100
    await post(conn, ids, "k2", [("capital", 300), ("seller", -300)])
    assert await conn.fetchval("SELECT balance FROM accounts WHERE code = 'capital' AND platform_id = 'p1'") == -200


@pytest.mark.parametrize(
    ("override", "sqlstate", "constraint"),
    [
        ({"balance_after": 101}, CHECK, "postings_running_balance"),
        ({"balance_after": -100}, CHECK, "postings_running_balance"),  # sign ignored
        ({"version": 3}, CHECK, "postings_running_balance"),  # skips version 2
        ({"version": 1, "balance_after": 100}, UNIQUE, "postings_account_version_unique"),
    ],
    ids=["off-by-one", "wrong-sign", "version-gap", "version-reused"],
)
async def test_a_posting_must_continue_the_running_balance(conn, ids, override, sqlstate, constraint):
    await post(conn, ids, "k1", [("cash", 100), ("capital", -100)])
    with pytest.raises(asyncpg.PostgresError) as raised:
        async with conn.transaction():
            entry_id = await insert_entry(conn, "k2")
            await insert_posting(conn, entry_id, ids["p1", "cash"], 100, update_account=False, **override)
    assert_refused(raised.value, sqlstate, constraint)
    assert await count(conn, "postings") == 2


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE accounts SET balance = balance + 1 WHERE code = 'capital' AND platform_id = 'p1'",
        "UPDATE accounts SET version = version + 1 WHERE code = 'capital' AND platform_id = 'p1'",
        "UPDATE accounts SET balance = 0, version = 0 WHERE code = 'cash' AND platform_id = 'p1'",
        "UPDATE accounts SET balance = 7 WHERE code = 'usd_capital' AND platform_id = 'p1'",  # never posted
    ],
)
async def test_an_account_update_that_disagrees_with_its_last_posting_is_refused_at_commit(conn, ids, statement):
    await post(conn, ids, "k1", [("cash", 100), ("capital", -100)])
    tx = conn.transaction()
    await tx.start()
    await conn.execute(statement)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await tx.commit()
    assert_refused(raised.value, CHECK, "accounts_balance_matches_postings")
    balances = dict(await conn.fetch("SELECT code, balance FROM accounts WHERE platform_id = 'p1'"))
    assert (balances["cash"], balances["capital"], balances["usd_capital"]) == (100, 100, 0)


async def test_a_posting_without_its_account_update_is_refused_at_commit(conn, ids):
    with pytest.raises(asyncpg.PostgresError) as raised:
        async with conn.transaction():
            entry_id = await insert_entry(conn, "k1")
            await insert_posting(conn, entry_id, ids["p1", "cash"], 100)
            await insert_posting(conn, entry_id, ids["p1", "capital"], -100, update_account=False)
    assert_refused(raised.value, CHECK, "accounts_balance_matches_postings")


@pytest.mark.parametrize(
    ("statement", "column"),
    [
        ("UPDATE accounts SET kind = 'liability' WHERE code = 'cash' AND platform_id = 'p1'", "kind"),
        ("UPDATE accounts SET currency = 'USD' WHERE code = 'cash' AND platform_id = 'p1'", "currency"),
    ],
)
async def test_an_account_cannot_change_kind_or_currency(conn, ids, statement, column):
    # flipping kind flips normal_sign and silently unbalances the trial balance
    await post(conn, ids, "k1", [("cash", 100), ("capital", -100)])
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.execute(statement)
    assert_refused(raised.value, RESTRICT, "accounts_kind_currency_fixed")
    total = await conn.fetchval(
        "SELECT sum(balance * normal_sign) FROM accounts WHERE platform_id = 'p1' AND currency = 'IDR'"
    )
    assert total == 0


# -- currencies and platforms -------------------------------------------------------------------


async def test_an_entry_mixing_currencies_needs_multi_currency(conn, ids):
    legs = [("cash", 100), ("capital", -100), ("usd_cash", 7), ("usd_capital", -7)]
    with pytest.raises(asyncpg.PostgresError) as raised:
        await post(conn, ids, "k1", legs)
    assert_refused(raised.value, CHECK, "journal_entries_single_currency")
    assert await count(conn, "journal_entries") == 0
    await post(conn, ids, "k1", legs, multi=True)
    assert await count(conn, "postings") == 4


async def test_a_multi_currency_entry_balances_per_currency(conn, ids):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await post(conn, ids, "k1", [("cash", 100), ("usd_capital", -100)], multi=True)
    assert_refused(raised.value, CHECK, "journal_entries_balanced")


async def test_a_posting_in_another_currency_than_its_account_is_refused(conn, ids):
    with pytest.raises(asyncpg.PostgresError) as raised:
        async with conn.transaction():
            entry_id = await insert_entry(conn, "k1")
            await insert_posting(conn, entry_id, ids["p1", "cash"], 100, currency="USD")
    assert_refused(raised.value, CHECK, "postings_currency_matches_account")


async def test_a_posting_cannot_reach_another_platforms_account(conn, ids):
    with pytest.raises(asyncpg.PostgresError) as raised:
        async with conn.transaction():
            entry_id = await insert_entry(conn, "k1", platform="p1")
            await insert_posting(conn, entry_id, ids["p2", "cash"], 100, platform="p1")
            await insert_posting(conn, entry_id, ids["p1", "capital"], -100, platform="p1")
    assert_refused(raised.value, FOREIGN_KEY, "postings_account_exists")
    assert await count(conn, "postings") == 0


async def test_a_posting_cannot_join_another_platforms_entry(conn, ids):
    entry_id = await post(conn, ids, "k1", [("cash", 100), ("capital", -100)])
    with pytest.raises(asyncpg.PostgresError) as raised:
        async with conn.transaction():
            await insert_posting(conn, entry_id, ids["p2", "cash"], 100, platform="p2")
    assert raised.value.sqlstate == FOREIGN_KEY
    assert constraint_name(raised.value) == "postings_platform_id_entry_id_fkey"


# -- the migration runner -----------------------------------------------------------------------


async def test_migrate_applies_each_migration_once_and_is_idempotent(empty_database_url):
    expected = load_migrations()
    c = await asyncpg.connect(empty_database_url)
    try:
        assert await migrate(c) == [m.name for m in expected]
        assert await migrate(c) == []
        rows = await c.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        assert [tuple(r) for r in rows] == [(m.version, m.name, m.checksum) for m in expected]
    finally:
        await c.close()


async def test_migrate_refuses_an_applied_migration_that_was_edited(database_url):
    applied = load_migrations()
    tampered = [dataclasses.replace(applied[0], sql=applied[0].sql + "\n-- edited\n"), *applied[1:]]
    probe = Migration(9999, "9999_probe.sql", "CREATE TABLE probe_table (id int)")
    c = await asyncpg.connect(database_url)
    try:
        with pytest.raises(MigrationChecksumMismatch) as raised:
            await migrate(c, [*tampered, probe])
        assert raised.value.code == "migration_checksum_mismatch"
        assert await c.fetchval("SELECT to_regclass('probe_table')") is None  # refused before applying anything
        assert await migrate(c, [*applied, probe]) == ["9999_probe.sql"]  # the lock was released
    finally:
        await c.close()


async def test_concurrent_migrations_apply_each_migration_exactly_once(empty_database_url):
    expected = [m.name for m in load_migrations()]
    conns = [await asyncpg.connect(empty_database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = [name for result in results for name in result]
        assert sorted(applied) == sorted(expected)  # all applied, none twice
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(expected)
    finally:
        for c in conns:
            await c.close()


async def test_a_posting_recorded_before_its_accounts_previous_posting_is_refused(conn, ids):
    """as_of balances read the last posting at or before an instant, so back-dating would falsify them."""
    await post(conn, ids, "k1", [("cash", 100), ("capital", -100)])
    with pytest.raises(asyncpg.PostgresError) as raised:
        async with conn.transaction():
            entry_id = await insert_entry(conn, "k2")
            await conn.execute(
                """
                INSERT INTO postings (platform_id, entry_id, account_id, amount, currency, balance_after,
                                      account_version, created_at)
                VALUES ('p1', $1, $2, 50, 'IDR', 150, 2, now() - interval '1 day')
                """,
                entry_id,
                ids["p1", "cash"],
            )
    assert_refused(raised.value, CHECK, "postings_recorded_in_order")
    assert await count(conn, "postings") == 2


async def test_entries_written_inside_savepoints_are_checked_like_any_other(conn, ids):
    """The commit-time check skips re-summing entries of the current transaction; an entry written
    in a savepoint (another transaction id) must still be checked, balanced or not."""
    async with conn.transaction(), conn.transaction():  # a savepoint
        entry_id = await insert_entry(conn, "k1")
        await insert_posting(conn, entry_id, ids["p1", "cash"], 100)
        await insert_posting(conn, entry_id, ids["p1", "capital"], -100)
    assert await count(conn, "postings") == 2
    tx = conn.transaction()
    await tx.start()
    async with conn.transaction():
        entry_id = await insert_entry(conn, "k2")
        await insert_posting(conn, entry_id, ids["p1", "cash"], 100)
        await insert_posting(conn, entry_id, ids["p1", "capital"], -99)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await tx.commit()
    assert_refused(raised.value, CHECK, "journal_entries_balanced")
    assert await count(conn, "postings") == 2
