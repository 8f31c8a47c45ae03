"""Building journal entries: pure, all-or-nothing.

Rule: an entry is either balanced and whole or it is not built at all. ``build_entry`` checks
everything at once and raises ``InvalidEntry`` listing every problem; no half-built entry escapes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from ledger.errors import InvalidEntry
from ledger.model import EntryDraft, PostingDraft

MAX_AMOUNT = 10**15  # far beyond any rupiah order; keeps sums safely inside bigint
MAX_KEY_LENGTH = 200


def build_entry(
    *,
    kind: str,
    idempotency_key: str,
    postings: Iterable[tuple[str, int]] | Mapping[str, int],
    effective_at: datetime | None = None,
    external_ref: str | None = None,
    multi_currency: bool = False,
    metadata: dict[str, Any] | None = None,
) -> EntryDraft:
    """Return a balanced ``EntryDraft`` or raise ``InvalidEntry`` with every problem found.

    Postings are ``(account_code, signed_amount)``; zero amounts are dropped only when passed as a
    mapping (the natural shape of an allocation), and rejected when passed explicitly.
    """
    problems: list[tuple[str, str]] = []
    if isinstance(postings, Mapping):
        pairs = [(code, amount) for code, amount in postings.items() if not (type(amount) is int and amount == 0)]
    else:
        pairs = list(postings)
    if not kind:
        problems.append(("missing_kind", "an entry needs a kind"))
    if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
        problems.append(("invalid_idempotency_key", f"idempotency key must be 1..{MAX_KEY_LENGTH} characters"))
    if effective_at is not None and effective_at.tzinfo is None:
        problems.append(("naive_datetime", "effective_at must carry a time zone"))
    total = 0
    for index, (code, amount) in enumerate(pairs):
        if not isinstance(code, str) or not code:
            problems.append(("missing_account", f"posting {index} has no account"))
        if type(amount) is not int:
            problems.append(
                ("non_integer_amount", f"posting {index} amount must be an int, got {type(amount).__name__}")
            )
            continue
        if amount == 0:
            problems.append(("zero_amount", f"posting {index} to {code!r} is zero"))
        if abs(amount) > MAX_AMOUNT:
            problems.append(("amount_out_of_range", f"posting {index} amount exceeds {MAX_AMOUNT}"))
        total += amount
    if len(pairs) < 2:
        problems.append(("too_few_postings", "an entry needs at least two postings"))
    if total != 0 and not multi_currency:
        problems.append(("unbalanced", f"postings sum to {total}, not zero"))
    if problems:
        raise InvalidEntry(problems)
    return EntryDraft(
        kind=kind,
        idempotency_key=idempotency_key,
        postings=tuple(PostingDraft(account=code, amount=amount) for code, amount in pairs),
        effective_at=effective_at,
        external_ref=external_ref,
        multi_currency=multi_currency,
        metadata=dict(metadata or {}),
    )


_encoder = msgspec.json.Encoder(order="sorted")


def content_hash(draft: EntryDraft) -> bytes:
    """What "same content" means for idempotent replays: everything but the key itself."""
    body = (
        draft.kind,
        [(p.account, p.amount) for p in draft.postings],
        # an instant, not a wall-clock reading: equal datetimes in other time zones are the same content
        _instant(draft.effective_at),
        draft.external_ref,
        draft.multi_currency,
        draft.metadata,
    )
    return hashlib.sha256(_encoder.encode(body)).digest()


def _instant(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.isoformat()
    return moment.astimezone(UTC).isoformat()
