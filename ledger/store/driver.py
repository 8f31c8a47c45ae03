"""Driver errors become domain errors here, and nowhere else.

Rule: nothing of asyncpg leaks above ``ledger.store``. A database that cannot be reached, is shutting
down, refuses connections or drops one mid-statement is ``StoreUnavailable`` (``database_unavailable``,
answered 503 with ``Retry-After``); a violated database-side invariant is translated by its constraint
name; deadlocks and serialization failures are retried by ``Database.transaction`` before they get here.
"""

from __future__ import annotations

import asyncio

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


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE)


def unavailable(exc: BaseException) -> errors.StoreUnavailable:
    return errors.StoreUnavailable(f"database unavailable: {type(exc).__name__}")


def translate_integrity_error(exc: asyncpg.exceptions.PostgresError) -> errors.LedgerError:
    """Map a database-side invariant violation (the last line of defence) to the error tree."""
    constraint = getattr(exc, "constraint_name", None) or ""
    if constraint in ("accounts_balance_non_negative", "postings_balance_non_negative"):
        return errors.InsufficientFunds(f"database refused an overdraft ({constraint})", constraint=constraint)
    if constraint == "journal_entries_idempotency_key_unique":
        return errors.IdempotencyConflict("idempotency key already used", constraint=constraint)
    # Anything else the database caught is a bug in the layers above it, not a user error.
    return errors.InvariantViolated(
        f"the database refused a write ({constraint or type(exc).__name__})", constraint=constraint
    )
