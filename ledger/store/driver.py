"""Driver errors become domain errors here, and nowhere else.

Rule: nothing of asyncpg leaks above ``ledger.store``. A database that cannot be reached, is shutting
down, refuses connections or drops one mid-statement is ``StoreUnavailable`` (``database_unavailable``,
answered 503 with ``Retry-After``); a violated database-side invariant is translated by its constraint
name; deadlocks and serialization failures are retried by ``Database.transaction`` before they get here.
"""

from __future__ import annotations

import asyncio
import re

import asyncpg

from ledger import errors

# Transient conflicts between transactions: the whole unit of work is run again.
RETRYABLE: tuple[type[Exception], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)

# The database is not there (or not any more): refused, reset, shut down, out of connections.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.InterfaceError,  # "pool is closing", "connection is closed"
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08, ConnectionDoesNotExistError
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.exceptions.InternalClientError,
)


class Connection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection, except that a commit a Citus worker refuses raises the worker's refusal.

    A deferred check that fails at commit on a worker (an unbalanced entry, a balance that
    disagrees with its postings) reaches the client as a WARNING carrying the refusal (its SQLSTATE
    and message), then ``XX000 could not commit transaction for shard …``. The transaction is
    rolled back either way; this raises the refusal itself, as one server would (the error tree,
    retries and tests then see the same refusal on both). On one server nothing changes: a COMMIT
    never fails that way there.
    """

    async def execute(self, query: str, *args: object, timeout: float | None = None) -> str:  # noqa: ASYNC109 (asyncpg's signature)
        if args or query not in ("COMMIT;", "COMMIT"):
            result: str = await super().execute(query, *args, timeout=timeout)
            return result
        warnings: list[object] = []

        def keep(_conn: object, message: object) -> None:
            warnings.append(message)

        self.add_log_listener(keep)
        try:
            result = await super().execute(query, timeout=timeout)
            return result
        except asyncpg.exceptions.InternalServerError as exc:
            if not str(exc).startswith("could not commit transaction"):
                raise
            await asyncio.sleep(0)  # the warnings' callbacks were scheduled before this error
            refusal = next((w for w in warnings if isinstance(w, asyncpg.exceptions.PostgresError)), None)
            if refusal is None:
                raise
            raise refusal from exc
        finally:
            self.remove_log_listener(keep)


async def is_distributed(conn: asyncpg.Connection) -> bool:
    """Whether the database is a Citus coordinator (the ``citus`` extension is installed in it)."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')"))


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE)


def unavailable(exc: BaseException) -> errors.StoreUnavailable:
    return errors.StoreUnavailable(f"database unavailable: {type(exc).__name__}")


# On a Citus cluster a refusal comes from a worker's shard: Citus passes its SQLSTATE and message
# on, not its constraint name, and a shard's constraints carry the shard's id
# (orders_amount_positive_102041). The name is then read from the message: PostgreSQL's own
# refusals quote it; the refusals the migrations' triggers raise are known by their wording
# (tests/unit/test_constraint_names.py holds every RAISE of every migration to this table).
_SHARD_ID = re.compile(r"_\d{6,}(?=_|$)")
_QUOTED = re.compile(r'constraint "([^"]+)"')
_APPEND_ONLY = re.compile(r"^([a-z_]+?)(?:_\d{6,})? is append-only: ")
_RAISED: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (r"^account \S+ keeps its kind and currency$", "accounts_kind_currency_fixed"),
        (r"^account \S+ keeps its platform and id$", "accounts_key_fixed"),
        (r"^posting to unknown account ", "postings_account_exists"),
        (r"^account \S+ has postings and cannot be deleted$", "postings_account_exists"),
        (r"^posting currency \S+ differs from account currency ", "postings_currency_matches_account"),
        (r"^posting version \S+ of account \S+ does not follow a previous posting$", "postings_running_balance"),
        (r"^running balance ", "postings_running_balance"),
        (r"^posting of account \S+ recorded at .* before its previous posting", "postings_recorded_in_order"),
        (r"^account \S+ may not go negative$", "postings_balance_non_negative"),
        (r"^posting to journal entry \S+ of no such entry on its platform$", "postings_platform_id_entry_id_fkey"),
        (r"^journal entry of unknown platform ", "journal_entries_platform_id_fkey"),
        (r"^journal entry \S+ has \S+ postings \(at least 2 needed\)$", "journal_entries_has_postings"),
        (r"^journal entry \S+ does not balance$", "journal_entries_balanced"),
        (r"^journal entry \S+ mixes currencies$", "journal_entries_single_currency"),
        (r"^account \S+ balance/version .* disagree with its (last )?posting", "accounts_balance_matches_postings"),
        (r"^accounts cannot be truncated: ", "postings_append_only"),
        (r"^invoice number .* cannot be addressed in a URL$", "orders_invoice_number_addressable"),
        (r"^events are immutable: ", "events_append_only"),
    )
)


def constraint_name(exc: BaseException) -> str | None:
    """The name of the constraint a database error says was violated, on one server or on Citus."""
    name: str | None = getattr(exc, "constraint_name", None)
    if name:
        return _SHARD_ID.sub("", name)
    message: str = getattr(exc, "message", None) or ""
    quoted = _QUOTED.search(message)
    if quoted:
        return _SHARD_ID.sub("", quoted.group(1))
    append_only = _APPEND_ONLY.match(message)
    if append_only:
        return f"{append_only.group(1)}_append_only"
    for pattern, raised in _RAISED:
        if pattern.search(message):
            return raised
    return None


def translate_integrity_error(exc: asyncpg.exceptions.PostgresError) -> errors.LedgerError:
    """Map a database-side invariant violation (the last line of defence) to the error tree."""
    constraint = constraint_name(exc) or ""
    if constraint in ("accounts_balance_non_negative", "postings_balance_non_negative"):
        return errors.InsufficientFunds(f"database refused an overdraft ({constraint})", constraint=constraint)
    if constraint == "journal_entries_idempotency_key_unique":
        return errors.IdempotencyConflict("idempotency key already used", constraint=constraint)
    # Anything else the database caught is a bug in the layers above it, not a user error.
    return errors.InvariantViolated(
        f"the database refused a write ({constraint or type(exc).__name__})", constraint=constraint
    )
