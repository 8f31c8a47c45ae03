"""The store: every line of SQL splitledger runs, one module per table, behind one seam.

``Database`` (``database.py``) owns the pool and every transaction; ``UnitOfWork`` hands out the
tables; ``driver.py`` translates asyncpg's errors. ``journal.py`` is the ledger itself (accounts,
entries, postings, and the one function that locks balance rows).
"""

from ledger.store.database import Database, UnitOfWork
from ledger.store.driver import translate_integrity_error
from ledger.store.journal import BoundLedger, LedgerStore, lock_accounts, lock_balances, raise_rejection

__all__ = [
    "BoundLedger",
    "Database",
    "LedgerStore",
    "UnitOfWork",
    "lock_accounts",
    "lock_balances",
    "raise_rejection",
    "translate_integrity_error",
]
