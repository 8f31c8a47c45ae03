"""The ledger's PostgreSQL store (asyncpg) — the only place the ledger touches a database.

Rules it keeps:
* Set-based posting: ``post`` takes many entries and writes them in two statements (lock the
  accounts and read the idempotency keys; insert the entries and postings and update the balances),
  so each account's balance row is updated once per batch however many entries touch it, and a
  batch costs two round trips whatever its size.
* Accounts are locked in ``account_id`` order (``ORDER BY … FOR UPDATE``) so concurrent batches
  cannot deadlock on each other; deadlocks and serialization failures are retried anyway.
* Per-entry results (TigerBeetle style): one entry that would overdraw or conflicts is rejected
  with its own code while the rest of the batch commits.
* Idempotency: the same key with the same content returns the original entry; the same key with
  different content is ``idempotency_conflict``.
* asyncpg exceptions are translated here and never leak upward.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

import ledger.store.driver as driver
import ledger.store.values as values
from ledger import errors
from ledger.journal import content_hash
from ledger.model import (
    Account,
    AccountSpec,
    EntryDraft,
    JournalEntry,
    Posted,
    Posting,
    PostResult,
    Rejected,
    Statement,
    StatementLine,
    TrialBalance,
    TrialBalanceLine,
)
from ledger.store.driver import translate_integrity_error

_json_encode = msgspec.json.Encoder(order="sorted").encode
_json_decode = msgspec.json.decode

RETRYABLE = driver.RETRYABLE
MAX_ATTEMPTS = 6


class ConcurrentDuplicate(Exception):
    """Another transaction inserted one of our idempotency keys after we looked: retry the batch."""


_ConcurrentDuplicate = ConcurrentDuplicate
TRANSIENT: tuple[type[BaseException], ...] = (*driver.RETRYABLE, ConcurrentDuplicate)


def _metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        decoded: dict[str, Any] = _json_decode(value)
        return decoded
    return dict(value)


def _account(row: asyncpg.Record) -> Account:
    return Account(
        account_id=row["account_id"],
        code=row["code"],
        kind=row["kind"],
        currency=row["currency"],
        allow_negative=row["allow_negative"],
        balance=row["balance"],
        version=row["version"],
        metadata=_metadata(row["metadata"]),
        created_at=row["created_at"],
    )


class LedgerStore:
    """Accounts, entries, balances and statements for many platforms in one database."""

    def __init__(self, pool: asyncpg.Pool, *, database: object | None = None) -> None:
        self.pool = pool
        self.distributed: bool | None = None  # on a Citus cluster? (asked once; Database tells it)

    @asynccontextmanager
    async def _connection(self, conn: asyncpg.Connection | None) -> AsyncIterator[asyncpg.Connection]:
        if conn is not None:
            yield conn
            return
        try:
            async with self.pool.acquire() as acquired:
                yield acquired
        except driver.UNAVAILABLE as exc:
            raise driver.unavailable(exc) from exc

    async def _on_citus(self, conn: asyncpg.Connection) -> bool:
        if self.distributed is None:  # a store used without a Database asks once itself
            self.distributed = await driver.is_distributed(conn)
        return self.distributed

    # -- accounts ---------------------------------------------------------------------------

    async def open_accounts(
        self, platform_id: str, specs: Sequence[AccountSpec], *, conn: asyncpg.Connection | None = None
    ) -> list[Account]:
        """Open accounts that do not exist yet; return all of them (idempotent by code).

        All or nothing: when one spec clashes with an existing account, none is opened.
        """
        if not specs:
            return []
        async with self._connection(conn) as c, c.transaction():
            if await self._on_citus(c):  # a router insert on Citus (ledger/store/values.py)
                await values.insert_values(
                    c,
                    "INSERT INTO accounts (platform_id, code, kind, currency, allow_negative, metadata)",
                    ("$1", "text", "text", "text", "bool", "text::jsonb"),
                    [
                        (s.code, s.kind, s.currency, s.allow_negative, _json_encode(s.metadata).decode())
                        for s in sorted(specs, key=lambda s: s.code)
                    ],
                    shared=(platform_id,),
                    tail="ON CONFLICT (platform_id, code) DO NOTHING",
                )
            else:
                await c.execute(
                    """
                    INSERT INTO accounts (platform_id, code, kind, currency, allow_negative, metadata)
                    SELECT $1, code, kind, currency, allow_negative, metadata::jsonb
                      FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[], $6::text[])
                           AS s(code, kind, currency, allow_negative, metadata)
                    ORDER BY code
                    ON CONFLICT (platform_id, code) DO NOTHING
                    """,
                    platform_id,
                    [s.code for s in specs],
                    [s.kind for s in specs],
                    [s.currency for s in specs],
                    [s.allow_negative for s in specs],
                    [_json_encode(s.metadata).decode() for s in specs],
                )
            rows = await c.fetch(
                "SELECT * FROM accounts WHERE platform_id = $1 AND code = ANY($2::text[])",
                platform_id,
                [s.code for s in specs],
            )
            by_code = {row["code"]: _account(row) for row in rows}
            opened = []
            for spec in specs:
                account = by_code[spec.code]
                if (account.kind, account.currency, account.allow_negative) != (
                    spec.kind,
                    spec.currency,
                    spec.allow_negative,
                ):
                    raise errors.AccountExists(
                        f"account {spec.code!r} exists as {account.kind}/{account.currency}", account=spec.code
                    )
                opened.append(account)
        return opened

    async def get_account(self, platform_id: str, code: str, *, conn: asyncpg.Connection | None = None) -> Account:
        async with self._connection(conn) as c:
            row = await c.fetchrow("SELECT * FROM accounts WHERE platform_id = $1 AND code = $2", platform_id, code)
        if row is None:
            raise errors.UnknownAccount(f"no account {code!r}", account=code)
        return _account(row)

    async def list_accounts(
        self,
        platform_id: str,
        *,
        prefix: str | None = None,
        after: str | None = None,
        limit: int = 100,
        conn: asyncpg.Connection | None = None,
    ) -> list[Account]:
        async with self._connection(conn) as c:
            rows = await c.fetch(
                """
                SELECT * FROM accounts
                 WHERE platform_id = $1
                   AND ($2::text IS NULL OR code LIKE $2 || '%')
                   AND ($3::text IS NULL OR code > $3)
                 ORDER BY code LIMIT $4
                """,
                platform_id,
                prefix,
                after,
                limit,
            )
        return [_account(r) for r in rows]

    # -- posting ----------------------------------------------------------------------------

    async def post(
        self, platform_id: str, drafts: Sequence[EntryDraft], *, conn: asyncpg.Connection | None = None
    ) -> list[PostResult]:
        """Post a batch of entries; one result per draft, in order.

        With ``conn`` the batch joins the caller's transaction (the caller owns retries); without
        it the store runs its own transaction and retries deadlocks and serialization failures.
        """
        if not drafts:
            return []
        if conn is not None:
            return await self._post_in_transaction(conn, platform_id, drafts)
        results: list[PostResult] = await self.run_in_transaction(
            lambda c: self._post_in_transaction(c, platform_id, drafts)
        )
        return results

    async def run_in_transaction(self, work: Any) -> Any:
        """Run ``await work(conn)`` in a fresh transaction, retrying transient conflicts."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self._connection(None) as c, c.transaction():
                    return await work(c)
            except TRANSIENT:
                if attempt == MAX_ATTEMPTS:
                    raise errors.StoreUnavailable("gave up after repeated transaction conflicts") from None
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
            except asyncpg.exceptions.IntegrityConstraintViolationError as exc:
                raise translate_integrity_error(exc) from exc
            except driver.UNAVAILABLE as exc:
                raise driver.unavailable(exc) from exc
        raise AssertionError("unreachable")

    async def post_one(self, platform_id: str, draft: EntryDraft, *, conn: asyncpg.Connection | None = None) -> Posted:
        """Post one entry; raise its error instead of returning a ``Rejected``."""
        (result,) = await self.post(platform_id, [draft], conn=conn)
        return raise_rejection(result)

    async def _post_in_transaction(
        self, conn: asyncpg.Connection, platform_id: str, drafts: Sequence[EntryDraft]
    ) -> list[PostResult]:
        codes = sorted({p.account for d in drafts for p in d.postings})
        rows, existing = await _lock_accounts_and_read_keys(
            conn, platform_id, codes, [d.idempotency_key for d in drafts]
        )
        accounts = {r["code"]: r for r in rows}
        balance = {r["code"]: r["balance"] for r in rows}
        version = {r["code"]: r["version"] for r in rows}
        hashes = [content_hash(d) for d in drafts]

        results: list[PostResult | None] = [None] * len(drafts)
        accepted: dict[str, int] = {}  # key -> index of the accepted draft in this batch
        replay_of: dict[int, str] = {}  # index -> key of an accepted draft in this batch
        posting_rows: list[tuple[str, int, int, str, int, int]] = []
        for index, (draft, digest) in enumerate(zip(drafts, hashes, strict=True)):
            key = draft.idempotency_key
            if key in existing:
                entry_id, stored = existing[key]
                results[index] = (
                    Posted(entry_id=entry_id, replayed=True)
                    if stored == digest
                    else Rejected(code="idempotency_conflict", detail=f"key {key!r} was used for a different entry")
                )
                continue
            if key in accepted:
                if hashes[accepted[key]] == digest:
                    replay_of[index] = key
                else:
                    results[index] = Rejected(
                        code="idempotency_conflict", detail=f"key {key!r} was used for a different entry"
                    )
                continue
            rejection = _check_draft(draft, accounts, balance)
            if rejection is not None:
                results[index] = rejection
                continue
            for p in draft.postings:
                balance[p.account] += p.amount * accounts[p.account]["normal_sign"]
                version[p.account] += 1
                posting_rows.append(
                    (
                        key,
                        accounts[p.account]["account_id"],
                        p.amount,
                        accounts[p.account]["currency"],
                        balance[p.account],
                        version[p.account],
                    )
                )
            accepted[key] = index

        if accepted:
            touched = sorted({row[1] for row in posting_rows})
            by_id = {accounts[c]["account_id"]: c for c in accounts}
            entry_ids = await self._insert(
                conn,
                platform_id,
                [drafts[i] for i in accepted.values()],
                [hashes[i] for i in accepted.values()],
                posting_rows,
                (touched, [balance[by_id[a]] for a in touched], [version[by_id[a]] for a in touched]),
            )
            for key, index in accepted.items():
                results[index] = Posted(entry_id=entry_ids[key])
            for index, key in replay_of.items():
                results[index] = Posted(entry_id=entry_ids[key], replayed=True)
        return [r for r in results if r is not None]

    async def _insert(
        self,
        conn: asyncpg.Connection,
        platform_id: str,
        drafts: list[EntryDraft],
        hashes: list[bytes],
        posting_rows: list[tuple[str, int, int, str, int, int]],
        updated: tuple[list[int], list[int], list[int]],
    ) -> dict[str, int]:
        """Insert the entries and their postings and update the balance rows, in one statement."""
        keys, acct_ids, amounts, currencies, balances, versions = (
            [list(col) for col in zip(*posting_rows, strict=True)] if posting_rows else ([], [], [], [], [], [])
        )
        if await self._on_citus(conn):
            return await self._insert_on_citus(conn, platform_id, drafts, hashes, posting_rows, updated)
        rows = await conn.fetch(
            """
            WITH now_ AS MATERIALIZED (SELECT clock_timestamp() AS ts),
            e AS (
                INSERT INTO journal_entries (platform_id, kind, idempotency_key, content_hash, external_ref,
                                             multi_currency, effective_at, created_at, metadata)
                SELECT $1, s.kind, s.key, s.hash, s.external_ref, s.multi, coalesce(s.effective_at, now_.ts),
                       now_.ts, s.metadata::jsonb
                  FROM unnest($2::text[], $3::text[], $4::bytea[], $5::text[], $6::bool[], $7::timestamptz[],
                              $8::text[]) WITH ORDINALITY
                       AS s(kind, key, hash, external_ref, multi, effective_at, metadata, ord), now_
                 ORDER BY s.ord
                ON CONFLICT (platform_id, idempotency_key) DO NOTHING
                RETURNING entry_id, idempotency_key
            ),
            p AS (
                INSERT INTO postings (platform_id, entry_id, account_id, amount, currency, balance_after,
                                      account_version, created_at)
                SELECT $1, e.entry_id, x.account_id, x.amount, x.currency, x.balance_after, x.version, now_.ts
                  FROM unnest($9::text[], $10::bigint[], $11::bigint[], $12::text[], $13::bigint[], $14::bigint[])
                       WITH ORDINALITY AS x(key, account_id, amount, currency, balance_after, version, ord)
                  JOIN e ON e.idempotency_key = x.key
                  CROSS JOIN now_
                 ORDER BY x.ord
                RETURNING 1
            ),
            u AS (
                UPDATE accounts AS a SET balance = s.balance, version = s.version
                  FROM unnest($15::bigint[], $16::bigint[], $17::bigint[]) AS s(account_id, balance, version)
                 WHERE a.platform_id = $1 AND a.account_id = s.account_id
                RETURNING 1
            )
            SELECT entry_id, idempotency_key, (SELECT count(*) FROM p) AS postings, (SELECT count(*) FROM u) AS updated
              FROM e
            """,
            platform_id,
            [d.kind for d in drafts],
            [d.idempotency_key for d in drafts],
            hashes,
            [d.external_ref for d in drafts],
            [d.multi_currency for d in drafts],
            [d.effective_at for d in drafts],
            [_json_encode(d.metadata).decode() for d in drafts],
            keys,
            acct_ids,
            amounts,
            currencies,
            balances,
            versions,
            *updated,
        )
        if len(rows) != len(drafts) or (rows and rows[0]["postings"] != len(posting_rows)):
            raise _ConcurrentDuplicate()
        return {r["idempotency_key"]: r["entry_id"] for r in rows}

    async def _insert_on_citus(
        self,
        conn: asyncpg.Connection,
        platform_id: str,
        drafts: list[EntryDraft],
        hashes: list[bytes],
        posting_rows: list[tuple[str, int, int, str, int, int]],
        updated: tuple[list[int], list[int], list[int]],
    ) -> dict[str, int]:
        """The same writes as ``_insert``, for a Citus cluster, as statements Citus routes to the one
        node of the platform's shard group and commits there with a plain COMMIT.

        Citus runs the one-statement form's CTEs as subplans whose results it sends to every worker,
        and writes the rows of an ``INSERT … SELECT`` from arrays through a copy that always ends in
        a two-phase commit. Here: the instant of the entries (the same for all of them and their
        postings, as in ``_insert``, and taken after the accounts were locked, so that an account's
        postings are recorded in time order), the entries and the postings as multi-row VALUES lists
        (``values.insert_values``), and the balances as one router UPDATE (docs/scale-out.md).
        """
        now = await conn.fetchval("SELECT clock_timestamp()")
        entries = await values.insert_values(
            conn,
            "INSERT INTO journal_entries (platform_id, kind, idempotency_key, content_hash, external_ref,"
            " multi_currency, effective_at, created_at, metadata)",
            ("$1", "text", "text", "bytea", "text", "bool", "timestamptz", "$2", "text::jsonb"),
            [
                (
                    d.kind,
                    d.idempotency_key,
                    h,
                    d.external_ref,
                    d.multi_currency,
                    d.effective_at or now,
                    _json_encode(d.metadata).decode(),
                )
                for d, h in zip(drafts, hashes, strict=True)
            ],
            shared=(platform_id, now),
            tail="ON CONFLICT (platform_id, idempotency_key) DO NOTHING RETURNING entry_id, idempotency_key",
        )
        if len(entries) != len(drafts):
            raise _ConcurrentDuplicate()
        entry_ids = {r["idempotency_key"]: r["entry_id"] for r in entries}
        await values.insert_values(
            conn,
            "INSERT INTO postings (platform_id, entry_id, account_id, amount, currency, balance_after,"
            " account_version, created_at)",
            ("$1", "bigint", "bigint", "bigint", "text", "bigint", "bigint", "$2"),
            [(entry_ids[row[0]], *row[1:]) for row in posting_rows],
            shared=(platform_id, now),
        )
        await conn.execute(
            """
            UPDATE accounts AS a SET balance = s.balance, version = s.version
              FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS s(account_id, balance, version)
             WHERE a.platform_id = $1 AND a.account_id = s.account_id
            """,
            platform_id,
            *updated,
        )
        return entry_ids

    # -- reading ----------------------------------------------------------------------------

    async def balance(
        self, platform_id: str, code: str, *, as_of: datetime | None = None, conn: asyncpg.Connection | None = None
    ) -> int:
        return (await self.balances(platform_id, [code], as_of=as_of, conn=conn))[code]

    async def balances(
        self,
        platform_id: str,
        codes: Sequence[str],
        *,
        as_of: datetime | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> dict[str, int]:
        """Balances now, or as recorded at ``as_of`` (the running balance of the last posting then)."""
        async with self._connection(conn) as c:
            if as_of is None:
                rows = await c.fetch(
                    "SELECT code, balance FROM accounts WHERE platform_id = $1 AND code = ANY($2::text[])",
                    platform_id,
                    list(codes),
                )
            else:
                rows = await c.fetch(
                    """
                    SELECT a.code, coalesce(last.balance_after, 0) AS balance
                      FROM accounts a
                      LEFT JOIN LATERAL (
                          SELECT p.balance_after FROM postings p
                           WHERE p.platform_id = a.platform_id AND p.account_id = a.account_id
                             AND p.created_at <= $3
                           ORDER BY p.created_at DESC, p.account_version DESC LIMIT 1
                      ) AS last ON true
                     WHERE a.platform_id = $1 AND a.code = ANY($2::text[])
                    """,
                    platform_id,
                    list(codes),
                    as_of,
                )
        found = {r["code"]: r["balance"] for r in rows}
        missing = [c for c in codes if c not in found]
        if missing:
            raise errors.UnknownAccount(f"no account {missing[0]!r}", account=missing[0])
        return found

    async def statement(
        self,
        platform_id: str,
        code: str,
        *,
        after_version: int | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> Statement:
        """An account's postings in order with running balances; keyset-paginated by version."""
        async with self._connection(conn) as c:
            account = await self.get_account(platform_id, code, conn=c)
            rows = await c.fetch(
                """
                SELECT p.posting_id, p.entry_id, e.kind, e.external_ref, p.amount, p.balance_after,
                       p.account_version, e.effective_at, p.created_at, e.metadata
                  FROM postings p
                  JOIN journal_entries e ON e.platform_id = p.platform_id AND e.entry_id = p.entry_id
                 WHERE p.platform_id = $1 AND p.account_id = $2 AND p.account_version > $3
                   AND ($5::timestamptz IS NULL OR p.created_at >= $5)
                   AND ($6::timestamptz IS NULL OR p.created_at < $6)
                 ORDER BY p.account_version
                 LIMIT $4
                """,
                platform_id,
                account.account_id,
                after_version or 0,
                limit + 1,
                since,
                until,
            )
        lines = tuple(
            StatementLine(
                posting_id=r["posting_id"],
                entry_id=r["entry_id"],
                entry_kind=r["kind"],
                external_ref=r["external_ref"],
                amount=r["amount"],
                balance_after=r["balance_after"],
                account_version=r["account_version"],
                effective_at=r["effective_at"],
                created_at=r["created_at"],
                metadata=_metadata(r["metadata"]),
            )
            for r in rows[:limit]
        )
        next_cursor = lines[-1].account_version if len(rows) > limit else None
        return Statement(account=code, lines=lines, next_cursor=next_cursor)

    async def trial_balance(self, platform_id: str, *, conn: asyncpg.Connection | None = None) -> TrialBalance:
        async with self._connection(conn) as c:
            rows = await c.fetch(
                "SELECT code, kind, currency, balance, normal_sign FROM accounts WHERE platform_id = $1 ORDER BY code",
                platform_id,
            )
        totals: dict[str, int] = {}
        for r in rows:
            # debit-normal balances minus credit-normal balances: zero when every entry balanced
            totals[r["currency"]] = totals.get(r["currency"], 0) + r["balance"] * r["normal_sign"]
        return TrialBalance(
            lines=tuple(
                TrialBalanceLine(account=r["code"], kind=r["kind"], currency=r["currency"], balance=r["balance"])
                for r in rows
            ),
            totals=totals,
        )

    async def get_entry(
        self, platform_id: str, entry_id: int, *, conn: asyncpg.Connection | None = None
    ) -> JournalEntry:
        async with self._connection(conn) as c:
            entry = await c.fetchrow(
                "SELECT * FROM journal_entries WHERE platform_id = $1 AND entry_id = $2", platform_id, entry_id
            )
            if entry is None:
                raise errors.EntryNotFound(f"no journal entry {entry_id}", entry_id=entry_id)
            postings = await c.fetch(
                """
                SELECT p.*, a.code FROM postings p
                  JOIN accounts a ON a.platform_id = p.platform_id AND a.account_id = p.account_id
                 WHERE p.platform_id = $1 AND p.entry_id = $2 ORDER BY p.posting_id
                """,
                platform_id,
                entry_id,
            )
        return JournalEntry(
            entry_id=entry["entry_id"],
            kind=entry["kind"],
            idempotency_key=entry["idempotency_key"],
            external_ref=entry["external_ref"],
            effective_at=entry["effective_at"],
            created_at=entry["created_at"],
            metadata=_metadata(entry["metadata"]),
            postings=tuple(
                Posting(
                    posting_id=p["posting_id"],
                    entry_id=p["entry_id"],
                    account=p["code"],
                    amount=p["amount"],
                    currency=p["currency"],
                    balance_after=p["balance_after"],
                    account_version=p["account_version"],
                    created_at=p["created_at"],
                )
                for p in postings
            ),
        )


async def lock_accounts(conn: asyncpg.Connection, platform_id: str, codes: Sequence[str]) -> list[asyncpg.Record]:
    """Lock the accounts' balance rows, always in ``account_id`` order: the one place that does it.

    Every writer (posting, refunds, payouts, settlement) locks through here, so no two
    transactions can wait on each other's balance rows in opposite orders.
    """
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT account_id, code, currency, allow_negative, normal_sign, balance, version
          FROM accounts WHERE platform_id = $1 AND code = ANY($2::text[])
         ORDER BY account_id FOR UPDATE
        """,
        platform_id,
        sorted(set(codes)),
    )
    return rows


async def _lock_accounts_and_read_keys(
    conn: asyncpg.Connection, platform_id: str, codes: Sequence[str], keys: Sequence[str]
) -> tuple[list[asyncpg.Record], dict[str, tuple[int, bytes]]]:
    """``lock_accounts`` and the entries already stored under ``keys``, in one round trip."""
    rows = await conn.fetch(
        """
        WITH locked AS (
            SELECT account_id, code, currency, allow_negative, normal_sign, balance, version
              FROM accounts WHERE platform_id = $1 AND code = ANY($2::text[])
             ORDER BY account_id FOR UPDATE
        )
        SELECT account_id, code, currency, allow_negative, normal_sign, balance, version,
               NULL::text AS idempotency_key, NULL::bigint AS entry_id, NULL::bytea AS content_hash
          FROM locked
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, idempotency_key, entry_id, content_hash
          FROM journal_entries WHERE platform_id = $1 AND idempotency_key = ANY($3::text[])
        """,
        platform_id,
        sorted(set(codes)),
        list(keys),
    )
    locked = [r for r in rows if r["code"] is not None]
    existing = {r["idempotency_key"]: (r["entry_id"], bytes(r["content_hash"])) for r in rows if r["code"] is None}
    return locked, existing


async def lock_balances(conn: asyncpg.Connection, platform_id: str, codes: Sequence[str]) -> dict[str, int]:
    """``lock_accounts``, as balances by code (only the accounts that exist)."""
    return {r["code"]: r["balance"] for r in await lock_accounts(conn, platform_id, codes)}


class BoundLedger:
    """The ledger store inside one unit of work: every call joins its transaction."""

    def __init__(self, store: LedgerStore, conn: asyncpg.Connection) -> None:
        self._store = store
        self._conn = conn

    async def post(self, platform_id: str, drafts: Sequence[EntryDraft]) -> list[PostResult]:
        return await self._store.post(platform_id, drafts, conn=self._conn)

    async def post_one(self, platform_id: str, draft: EntryDraft) -> Posted:
        return await self._store.post_one(platform_id, draft, conn=self._conn)

    async def open_accounts(self, platform_id: str, specs: Sequence[AccountSpec]) -> list[Account]:
        return await self._store.open_accounts(platform_id, specs, conn=self._conn)

    async def lock_balances(self, platform_id: str, codes: Sequence[str]) -> dict[str, int]:
        return await lock_balances(self._conn, platform_id, codes)

    async def balances(
        self, platform_id: str, codes: Sequence[str], *, as_of: datetime | None = None
    ) -> dict[str, int]:
        return await self._store.balances(platform_id, codes, as_of=as_of, conn=self._conn)

    async def get_account(self, platform_id: str, code: str) -> Account:
        return await self._store.get_account(platform_id, code, conn=self._conn)

    async def list_accounts(
        self, platform_id: str, *, prefix: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[Account]:
        return await self._store.list_accounts(platform_id, prefix=prefix, after=after, limit=limit, conn=self._conn)

    async def statement(
        self,
        platform_id: str,
        code: str,
        *,
        after_version: int | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Statement:
        return await self._store.statement(
            platform_id, code, after_version=after_version, limit=limit, since=since, until=until, conn=self._conn
        )

    async def trial_balance(self, platform_id: str) -> TrialBalance:
        return await self._store.trial_balance(platform_id, conn=self._conn)

    async def get_entry(self, platform_id: str, entry_id: int) -> JournalEntry:
        return await self._store.get_entry(platform_id, entry_id, conn=self._conn)


def _check_draft(draft: EntryDraft, accounts: dict[str, Any], balance: dict[str, int]) -> Rejected | None:
    # EntryDraft is a plain Struct: one built without build_entry must not sink the whole batch
    if len(draft.postings) < 2 or any(type(p.amount) is not int or p.amount == 0 for p in draft.postings):
        return Rejected(code="invalid_entry", detail="an entry needs at least two nonzero integer postings")
    unknown = [p.account for p in draft.postings if p.account not in accounts]
    if unknown:
        return Rejected(code="unknown_account", detail=f"no account {unknown[0]!r}")
    per_currency: dict[str, int] = {}
    for p in draft.postings:
        currency = accounts[p.account]["currency"]
        per_currency[currency] = per_currency.get(currency, 0) + p.amount
    if len(per_currency) > 1 and not draft.multi_currency:
        return Rejected(code="currency_mismatch", detail=f"entry mixes currencies {sorted(per_currency)}")
    if any(total != 0 for total in per_currency.values()):
        return Rejected(code="unbalanced", detail="postings do not sum to zero per currency")
    running: dict[str, int] = {}
    for p in draft.postings:
        running[p.account] = running.get(p.account, balance[p.account]) + p.amount * accounts[p.account]["normal_sign"]
        if running[p.account] < 0 and not accounts[p.account]["allow_negative"]:
            return Rejected(
                code="insufficient_funds",
                detail=f"{p.account} would go to {running[p.account]}",
            )
    return None


_REJECTIONS: dict[str, type[errors.LedgerError]] = {
    "idempotency_conflict": errors.IdempotencyConflict,
    "unknown_account": errors.UnknownAccount,
    "insufficient_funds": errors.InsufficientFunds,
}


def raise_rejection(result: PostResult) -> Posted:
    """Turn a per-entry ``Rejected`` into its exception; pass ``Posted`` through."""
    if isinstance(result, Posted):
        return result
    cls = _REJECTIONS.get(result.code)
    if cls is None:
        raise errors.InvalidEntry([(result.code, result.detail)])
    raise cls(result.detail)
