"""The ledger's records: frozen, integer-only.

Rule: amounts are ``int`` in the currency's smallest unit (whole rupiah for IDR); a posting's
amount is signed and never zero (positive = debit, negative = credit); records never change once made.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

AccountKind = Literal["asset", "liability", "equity", "revenue", "expense"]
ACCOUNT_KINDS: tuple[str, ...] = ("asset", "liability", "equity", "revenue", "expense")


class AccountSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What to open: an account is identified by its code within a platform."""

    code: str
    kind: AccountKind
    currency: str = "IDR"
    allow_negative: bool = False
    metadata: dict[str, Any] = {}


def normal_sign(kind: str) -> int:
    """+1 for debit-normal kinds (asset, expense), -1 for credit-normal ones."""
    return 1 if kind in ("asset", "expense") else -1


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """``balance`` is in the account's normal direction (see ``normal_sign``)."""

    account_id: int
    code: str
    kind: AccountKind
    currency: str
    allow_negative: bool
    balance: int
    version: int
    metadata: dict[str, Any]
    created_at: datetime


class PostingDraft(msgspec.Struct, frozen=True, kw_only=True):
    account: str  # account code
    amount: int  # positive = debit, negative = credit


class EntryDraft(msgspec.Struct, frozen=True, kw_only=True):
    """A balanced journal entry that has not been stored yet (build it with ``journal.build_entry``)."""

    kind: str
    idempotency_key: str
    postings: tuple[PostingDraft, ...]
    effective_at: datetime | None = None
    external_ref: str | None = None
    multi_currency: bool = False
    metadata: dict[str, Any] = {}


class Posting(msgspec.Struct, frozen=True, kw_only=True):
    posting_id: int
    entry_id: int
    account: str
    amount: int
    currency: str
    balance_after: int
    account_version: int
    created_at: datetime


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: int
    kind: str
    idempotency_key: str
    external_ref: str | None
    effective_at: datetime
    created_at: datetime
    metadata: dict[str, Any]
    postings: tuple[Posting, ...]


class Posted(msgspec.Struct, frozen=True, kw_only=True, tag="posted"):
    entry_id: int
    replayed: bool = False


class Rejected(msgspec.Struct, frozen=True, kw_only=True, tag="rejected"):
    code: str
    detail: str


PostResult = Posted | Rejected


class StatementLine(msgspec.Struct, frozen=True, kw_only=True):
    posting_id: int
    entry_id: int
    entry_kind: str
    external_ref: str | None
    amount: int
    balance_after: int
    account_version: int
    effective_at: datetime
    created_at: datetime
    metadata: dict[str, Any]


class Statement(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    lines: tuple[StatementLine, ...]
    next_cursor: int | None  # the account_version to continue after


class TrialBalanceLine(msgspec.Struct, frozen=True, kw_only=True):
    """``balance`` in the account's normal direction, as on ``Account``."""

    account: str
    kind: str
    currency: str
    balance: int


class TrialBalance(msgspec.Struct, frozen=True, kw_only=True):
    lines: tuple[TrialBalanceLine, ...]
    totals: dict[str, int]  # per currency: debit-normal minus credit-normal balances; zero when healthy

    @property
    def is_balanced(self) -> bool:
        return all(total == 0 for total in self.totals.values())
