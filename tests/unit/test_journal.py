"""Properties of ``journal.build_entry`` and ``journal.content_hash``.

Rule under test: an entry is either built whole and balanced or refused with ``InvalidEntry``
whose ``problems`` name every broken rule; no half-built entry escapes. ``content_hash`` is what
"same content" means for an idempotent replay: equal for equal drafts, different for any change
but the idempotency key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ledger.errors import InvalidEntry
from ledger.journal import MAX_AMOUNT, MAX_KEY_LENGTH, build_entry, content_hash
from ledger.model import EntryDraft, PostingDraft

KNOWN_CODES = {
    "missing_kind",
    "invalid_idempotency_key",
    "naive_datetime",
    "non_integer_amount",
    "zero_amount",
    "amount_out_of_range",
    "missing_account",
    "too_few_postings",
    "unbalanced",
}

account_codes = st.text(alphabet="abcxyz:", min_size=1, max_size=6)
small_amounts = st.integers(min_value=-10_000, max_value=10_000).filter(lambda a: a != 0)
any_int_amounts = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.integers(min_value=-2 * MAX_AMOUNT, max_value=2 * MAX_AMOUNT),
    st.sampled_from([MAX_AMOUNT, -MAX_AMOUNT, MAX_AMOUNT + 1, -MAX_AMOUNT - 1]),
)
non_int_amounts = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(alphabet="0123456789-", min_size=1, max_size=4),
    st.none(),
)
# Fixed offsets, as DOKU and our API send them: a zoneinfo wall time inside a DST gap names no
# real instant and does not survive a round trip through ISO 8601, in any system.
aware_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-12 * 60, 14 * 60)),
)
json_values = st.one_of(st.text(max_size=5), st.integers(-(2**40), 2**40), st.none())
metadata_dicts = st.dictionaries(st.text(max_size=5), json_values, max_size=3)


@st.composite
def balanced_postings(draw: st.DrawFn, min_size: int = 2, max_size: int = 6) -> list[tuple[str, int]]:
    """Nonzero integer postings that sum to zero."""
    head = draw(st.lists(st.tuples(account_codes, small_amounts), min_size=min_size - 1, max_size=max_size - 1))
    last = -sum(amount for _, amount in head)
    assume(last != 0)
    return [*head, (draw(account_codes), last)]


@st.composite
def arbitrary_postings(draw: st.DrawFn) -> list[tuple[object, object]]:
    """Mostly sensible, sometimes broken in one or several ways at once."""
    if draw(st.booleans()):
        postings: list[tuple[object, object]] = list(draw(balanced_postings(min_size=2, max_size=5)))
    else:
        postings = []
    extra = draw(
        st.lists(
            st.tuples(
                st.one_of(account_codes, st.just("")),
                st.one_of(any_int_amounts, non_int_amounts),
            ),
            max_size=3,
        )
    )
    postings.extend(extra)
    return draw(st.permutations(postings))


def required_and_allowed(
    *, kind: str, key: str, postings: list[tuple[object, object]], effective_at: datetime | None, multi: bool
) -> tuple[set[str], set[str]]:
    """The oracle: every code the rules demand, and the codes that may also appear.

    "unbalanced" is optional once a non-integer amount is present: such an entry has no exact sum.
    """
    required: set[str] = set()
    optional: set[str] = set()
    if not kind:
        required.add("missing_kind")
    if not key or len(key) > MAX_KEY_LENGTH:
        required.add("invalid_idempotency_key")
    if effective_at is not None and effective_at.tzinfo is None:
        required.add("naive_datetime")
    total = 0
    integral = True
    for code, amount in postings:
        if not isinstance(code, str) or not code:
            required.add("missing_account")
        if type(amount) is not int:
            required.add("non_integer_amount")
            integral = False
            continue
        if amount == 0:
            required.add("zero_amount")
        if abs(amount) > MAX_AMOUNT:
            required.add("amount_out_of_range")
        total += amount
    if len(postings) < 2:
        required.add("too_few_postings")
    if not multi:
        if integral and total != 0:
            required.add("unbalanced")
        elif not integral:
            optional.add("unbalanced")
    return required, optional


@given(
    kind=st.sampled_from(["", "capture", "refund"]),
    key=st.one_of(st.just(""), st.text(min_size=1, max_size=20), st.just("k" * (MAX_KEY_LENGTH + 1))),
    postings=arbitrary_postings(),
    effective_at=st.one_of(st.none(), aware_datetimes, st.datetimes()),
    multi=st.booleans(),
)
def test_entry_is_built_whole_or_refused_naming_every_broken_rule(kind, key, postings, effective_at, multi):
    required, optional = required_and_allowed(
        kind=kind, key=key, postings=postings, effective_at=effective_at, multi=multi
    )
    try:
        draft = build_entry(
            kind=kind, idempotency_key=key, postings=postings, effective_at=effective_at, multi_currency=multi
        )
    except InvalidEntry as exc:
        codes = {code for code, _ in exc.problems}
        assert exc.code == "invalid_entry"
        assert codes <= KNOWN_CODES
        assert required, f"refused a valid entry: {codes}"
        assert required <= codes, f"missing {required - codes}"
        assert codes <= required | optional, f"spurious {codes - required - optional}"
        return
    assert not required, f"built an entry that breaks {required}"
    assert [(p.account, p.amount) for p in draft.postings] == postings
    assert len(draft.postings) >= 2
    assert all(type(p.amount) is int and p.amount != 0 for p in draft.postings)
    if not multi:
        assert sum(p.amount for p in draft.postings) == 0
    assert (draft.kind, draft.idempotency_key, draft.effective_at, draft.multi_currency) == (
        kind,
        key,
        effective_at,
        multi,
    )


@given(postings=balanced_postings())
def test_balanced_integer_postings_build_a_balanced_entry(postings):
    draft = build_entry(kind="capture", idempotency_key="k1", postings=postings)
    assert sum(p.amount for p in draft.postings) == 0
    assert len(draft.postings) == len(postings) >= 2
    assert all(type(p.amount) is int and p.amount != 0 for p in draft.postings)


@given(postings=balanced_postings(), index=st.integers(min_value=0), bad=non_int_amounts)
def test_a_non_integer_amount_is_refused_even_when_it_looks_whole(postings, index, bad):
    index %= len(postings)
    code, _ = postings[index]
    postings[index] = (code, bad)
    with pytest.raises(InvalidEntry) as raised:
        build_entry(kind="capture", idempotency_key="k1", postings=postings)
    assert "non_integer_amount" in {code for code, _ in raised.value.problems}


@pytest.mark.parametrize(
    "postings",
    [
        [("a", 5.0), ("b", -5)],
        [("a", 5), ("b", -5.0)],
        [("a", True), ("b", -1)],
        [("a", False), ("b", 0)],
        [("a", Decimal(5)), ("b", -5)],
    ],
)
def test_floats_bools_and_decimals_are_not_money(postings):
    with pytest.raises(InvalidEntry) as raised:
        build_entry(kind="capture", idempotency_key="k1", postings=postings)
    assert "non_integer_amount" in {code for code, _ in raised.value.problems}


def test_a_float_amount_with_no_account_reports_both_problems():
    with pytest.raises(InvalidEntry) as raised:
        build_entry(kind="capture", idempotency_key="k1", postings=[("", 5.0), ("b", -5)])
    assert {"non_integer_amount", "missing_account"} <= {code for code, _ in raised.value.problems}


@given(postings=balanced_postings(), zeros=st.lists(account_codes, min_size=1, max_size=3))
def test_a_mapping_drops_zero_amounts_but_an_explicit_list_refuses_them(postings, zeros):
    by_account: dict[str, int] = {}
    for code, amount in postings:
        by_account[code] = by_account.get(code, 0) + amount
    for code in zeros:
        by_account.setdefault(code, 0)
    nonzero = {code: amount for code, amount in by_account.items() if amount != 0}
    if len(nonzero) >= 2:
        draft = build_entry(kind="capture", idempotency_key="k1", postings=by_account)
        assert {(p.account, p.amount) for p in draft.postings} == set(nonzero.items())
    else:
        with pytest.raises(InvalidEntry) as raised:
            build_entry(kind="capture", idempotency_key="k1", postings=by_account)
        assert "too_few_postings" in {code for code, _ in raised.value.problems}
    with pytest.raises(InvalidEntry) as raised:
        build_entry(kind="capture", idempotency_key="k1", postings=[*postings, (zeros[0], 0)])
    assert "zero_amount" in {code for code, _ in raised.value.problems}


# -- content hash -------------------------------------------------------------------------------


@st.composite
def drafts(draw: st.DrawFn) -> EntryDraft:
    return build_entry(
        kind=draw(st.sampled_from(["capture", "refund", "payout"])),
        idempotency_key=draw(st.text(min_size=1, max_size=10)),
        postings=draw(balanced_postings()),
        effective_at=draw(st.one_of(st.none(), aware_datetimes)),
        external_ref=draw(st.one_of(st.none(), st.text(max_size=8))),
        multi_currency=draw(st.booleans()),
        metadata=draw(metadata_dicts),
    )


def _copy(draft: EntryDraft) -> EntryDraft:
    """An equal draft that shares no objects with the original."""
    return msgspec.json.decode(msgspec.json.encode(draft), type=EntryDraft)


@given(draft=drafts())
def test_equal_drafts_hash_equal(draft):
    twin = _copy(draft)
    assert twin == draft
    assert content_hash(twin) == content_hash(draft)


@given(draft=drafts(), offset_minutes=st.integers(min_value=-12 * 60, max_value=14 * 60))
def test_the_same_instant_in_another_time_zone_hashes_equal(draft, offset_minutes):
    moment = draft.effective_at or datetime(2025, 1, 1, tzinfo=UTC)
    draft = msgspec.structs.replace(draft, effective_at=moment)
    shifted = msgspec.structs.replace(
        draft, effective_at=moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    )
    assert shifted == draft
    assert content_hash(shifted) == content_hash(draft)


@given(draft=drafts(), key=st.text(min_size=1, max_size=10))
def test_the_idempotency_key_is_not_content(draft, key):
    assert content_hash(msgspec.structs.replace(draft, idempotency_key=key)) == content_hash(draft)


def _changed(data: st.DataObject, draft: EntryDraft, field: str) -> EntryDraft:
    match field:
        case "kind":
            value = data.draw(st.text(min_size=1, max_size=8).filter(lambda v: v != draft.kind))
        case "postings":
            new = data.draw(balanced_postings())
            value = tuple(PostingDraft(account=a, amount=n) for a, n in new)
            assume(value != draft.postings)
        case "effective_at":
            value = data.draw(st.one_of(st.none(), aware_datetimes).filter(lambda v: v != draft.effective_at))
        case "external_ref":
            value = data.draw(st.one_of(st.none(), st.text(max_size=8)).filter(lambda v: v != draft.external_ref))
        case "multi_currency":
            value = not draft.multi_currency
        case "metadata":
            value = data.draw(metadata_dicts.filter(lambda v: v != draft.metadata))
        case _:
            raise AssertionError(field)
    return msgspec.structs.replace(draft, **{field: value})


@given(
    draft=drafts(),
    field=st.sampled_from(["kind", "postings", "effective_at", "external_ref", "multi_currency", "metadata"]),
    data=st.data(),
)
def test_any_change_but_the_key_changes_the_hash(draft, field, data):
    other = _changed(data, draft, field)
    assert other != draft
    assert content_hash(other) != content_hash(draft)


@given(postings=balanced_postings(min_size=3))
def test_posting_order_is_content(postings):
    reordered = postings[1:] + postings[:1]
    assume(reordered != postings)
    a = build_entry(kind="capture", idempotency_key="k", postings=postings)
    b = build_entry(kind="capture", idempotency_key="k", postings=reordered)
    assert content_hash(a) != content_hash(b)
