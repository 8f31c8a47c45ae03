"""The ledger's error tree. Each class carries a stable machine-readable ``code``.

    LedgerError
    ├── InvalidEntry            invalid_entry        (built entry breaks a rule; ``problems`` lists all)
    ├── UnknownAccount          unknown_account
    ├── AccountExists           account_exists       (same code, different kind/currency/flags)
    ├── InsufficientFunds       insufficient_funds   (a non-negative account would go negative)
    ├── IdempotencyConflict     idempotency_conflict (same key, different content)
    ├── EntryNotFound           entry_not_found
    └── StoreUnavailable        store_unavailable    (driver/connection failure, retry later)
"""

from __future__ import annotations

from collections.abc import Sequence


class LedgerError(Exception):
    code = "ledger_error"

    def __init__(self, detail: str = "", **context: object) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code
        self.context = context


class InvalidEntry(LedgerError):
    code = "invalid_entry"

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{code}: {detail}" for code, detail in problems))
        self.problems = tuple(problems)


class UnknownAccount(LedgerError):
    code = "unknown_account"


class AccountExists(LedgerError):
    code = "account_exists"


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"


class EntryNotFound(LedgerError):
    code = "entry_not_found"


class StoreUnavailable(LedgerError):
    code = "store_unavailable"
