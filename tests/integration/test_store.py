"""``LedgerStore`` on real PostgreSQL: idempotency, per-entry results, history, pagination, concurrency."""

from __future__ import annotations

import asyncio
import itertools
import random

import asyncpg
import pytest

from api.database import create_pool
from ledger import errors
from ledger.journal import build_entry
from ledger.model import AccountSpec, EntryDraft, Posted, PostingDraft, Rejected
from ledger.store import LedgerStore

P = "p1"
SPECS = [
    AccountSpec(code="cash", kind="asset"),
    AccountSpec(code="capital", kind="equity", allow_negative=True),
    AccountSpec(code="seller_a", kind="liability"),
    AccountSpec(code="seller_b", kind="liability"),
    AccountSpec(code="fees", kind="revenue"),
    AccountSpec(code="costs", kind="expense"),
    AccountSpec(code="usd_cash", kind="asset", currency="USD"),
    AccountSpec(code="usd_capital", kind="equity", currency="USD", allow_negative=True),
]
_keys = itertools.count(1)


def entry(*postings: tuple[str, int], key: str | None = None, kind: str = "test", multi: bool = False) -> EntryDraft:
    return build_entry(
        kind=kind, idempotency_key=key or f"k{next(_keys)}", postings=list(postings), multi_currency=multi
    )


def fund(amount: int, *, key: str | None = None) -> EntryDraft:
    """Owner puts cash in: cash up, capital up."""
    return entry(("cash", amount), ("capital", -amount), key=key)


def spend(amount: int, *, key: str | None = None) -> EntryDraft:
    """Cash out to costs; overdraws cash when cash is short."""
    return entry(("costs", amount), ("cash", -amount), key=key)


async def now(pool: asyncpg.Pool):
    return await pool.fetchval("SELECT clock_timestamp()")


async def entry_count(pool: asyncpg.Pool, platform: str = P) -> int:
    return await pool.fetchval("SELECT count(*) FROM journal_entries WHERE platform_id = $1", platform)


async def balances(store: LedgerStore, *codes: str) -> dict[str, int]:
    return await store.balances(P, list(codes or [s.code for s in SPECS]))


@pytest.fixture
async def store(pool: asyncpg.Pool) -> LedgerStore:
    await pool.execute("INSERT INTO platforms (platform_id, name) VALUES ('p1', 'P1'), ('p2', 'P2')")
    store = LedgerStore(pool)
    await store.open_accounts(P, SPECS)
    await store.open_accounts("p2", [AccountSpec(code="elsewhere", kind="asset", allow_negative=True)])
    return store


# -- accounts -----------------------------------------------------------------------------------


async def test_open_accounts_is_idempotent_by_code(store):
    first = {a.code: a.account_id for a in await store.open_accounts(P, SPECS)}
    again = await store.open_accounts(P, [*reversed(SPECS), AccountSpec(code="new", kind="asset")])
    assert [a.code for a in again] == [s.code for s in reversed(SPECS)] + ["new"]
    assert {a.code: a.account_id for a in again if a.code != "new"} == first
    assert len(await store.list_accounts(P)) == len(SPECS) + 1


@pytest.mark.parametrize(
    "changed",
    [
        AccountSpec(code="cash", kind="liability"),
        AccountSpec(code="cash", kind="asset", currency="USD"),
        AccountSpec(code="cash", kind="asset", allow_negative=True),
    ],
    ids=["kind", "currency", "allow_negative"],
)
async def test_reopening_an_account_differently_is_account_exists(store, changed):
    with pytest.raises(errors.AccountExists) as raised:
        await store.open_accounts(P, [AccountSpec(code="innocent", kind="asset"), changed])
    assert raised.value.code == "account_exists"
    account = await store.get_account(P, "cash")
    assert (account.kind, account.currency, account.allow_negative) == ("asset", "IDR", False)
    with pytest.raises(errors.UnknownAccount):
        await store.get_account(P, "innocent")  # a refused call opens nothing


# -- idempotency --------------------------------------------------------------------------------


async def test_a_replay_returns_the_original_entry_and_changes_nothing(store, pool):
    draft = fund(1000, key="order-1")
    first = await store.post_one(P, draft)
    assert first.replayed is False
    before = await balances(store)
    rebuilt = fund(1000, key="order-1")  # an equal draft built again, not the same object
    assert await store.post(P, [draft, rebuilt]) == [
        Posted(entry_id=first.entry_id, replayed=True),
        Posted(entry_id=first.entry_id, replayed=True),
    ]
    assert await store.post_one(P, draft) == Posted(entry_id=first.entry_id, replayed=True)
    assert await balances(store) == before == {**before, "cash": 1000, "capital": 1000}
    assert await entry_count(pool) == 1


async def test_a_replay_inside_one_batch_returns_the_entry_posted_earlier_in_it(store, pool):
    draft = fund(500, key="order-2")
    first, second = await store.post(P, [draft, draft])
    assert isinstance(first, Posted) and first.replayed is False
    assert second == Posted(entry_id=first.entry_id, replayed=True)
    assert await balances(store, "cash") == {"cash": 500}
    assert await entry_count(pool) == 1


async def test_the_same_key_with_other_content_is_an_idempotency_conflict(store, pool):
    posted = await store.post_one(P, fund(1000, key="order-3"))
    before = await balances(store)
    other = fund(999, key="order-3")
    (result,) = await store.post(P, [other])
    assert isinstance(result, Rejected) and result.code == "idempotency_conflict"
    with pytest.raises(errors.IdempotencyConflict) as raised:
        await store.post_one(P, other)
    assert raised.value.code == "idempotency_conflict"
    in_batch = await store.post(P, [fund(5, key="order-4"), fund(6, key="order-4")])
    assert [type(r).__name__ for r in in_batch] == ["Posted", "Rejected"]
    assert in_batch[1].code == "idempotency_conflict"
    assert await balances(store) == {**before, "cash": 1005, "capital": 1005}
    assert (await store.get_entry(P, posted.entry_id)).postings[0].amount == 1000
    assert await entry_count(pool) == 2


# -- per-entry results --------------------------------------------------------------------------


async def test_an_overdraft_is_rejected_alone_while_the_rest_of_the_batch_commits(store, pool):
    await store.post_one(P, fund(1000))
    results = await store.post(P, [spend(300), spend(800, key="too-much"), spend(700)])
    assert [type(r).__name__ for r in results] == ["Posted", "Rejected", "Posted"]
    assert results[1].code == "insufficient_funds"
    assert await balances(store, "cash", "costs") == {"cash": 0, "costs": 1000}
    assert await pool.fetchval("SELECT count(*) FROM journal_entries WHERE idempotency_key = 'too-much'") == 0
    with pytest.raises(errors.InsufficientFunds) as raised:
        await store.post_one(P, spend(1))
    assert raised.value.code == "insufficient_funds"
    assert await entry_count(pool) == 3


async def test_an_overdraft_counts_entries_earlier_in_the_same_batch(store):
    await store.post_one(P, fund(100))
    results = await store.post(P, [spend(60), spend(60), spend(40)])
    assert [getattr(r, "code", "posted") for r in results] == ["posted", "insufficient_funds", "posted"]
    assert await balances(store, "cash") == {"cash": 0}


async def test_an_unknown_account_is_rejected_alone(store, pool):
    results = await store.post(
        P,
        [
            fund(10),
            entry(("cash", 5), ("nowhere", -5)),
            entry(("cash", 5), ("elsewhere", -5)),  # exists, but on another platform
            fund(20),
        ],
    )
    assert [getattr(r, "code", "posted") for r in results] == ["posted", "unknown_account", "unknown_account", "posted"]
    with pytest.raises(errors.UnknownAccount) as raised:
        await store.post_one(P, entry(("cash", 5), ("nowhere", -5)))
    assert raised.value.code == "unknown_account"
    assert await balances(store, "cash") == {"cash": 30}
    assert await entry_count(pool) == 2
    with pytest.raises(errors.UnknownAccount):
        await store.balance(P, "nowhere")


async def test_a_draft_built_by_hand_that_breaks_the_rules_is_rejected_alone(store, pool):
    # EntryDraft is a plain Struct: nothing stops a caller from skipping build_entry
    empty = EntryDraft(kind="test", idempotency_key="empty", postings=())
    zero = EntryDraft(kind="test", idempotency_key="zero", postings=(PostingDraft(account="cash", amount=0),) * 2)
    results = await store.post(P, [fund(10), empty, zero, fund(20)])
    assert [getattr(r, "code", "posted") for r in results] == ["posted", "invalid_entry", "invalid_entry", "posted"]
    assert await balances(store, "cash") == {"cash": 30}
    with pytest.raises(errors.InvalidEntry):
        await store.post_one(P, empty)


async def test_mixed_currencies_need_a_multi_currency_entry(store, pool):
    mixed = [("cash", 100), ("capital", -100), ("usd_cash", 7), ("usd_capital", -7)]
    (result,) = await store.post(P, [entry(*mixed)])
    assert isinstance(result, Rejected) and result.code == "currency_mismatch"
    cross = entry(("cash", 100), ("usd_capital", -100))  # sums to zero, but not per currency
    (result,) = await store.post(P, [cross])
    assert isinstance(result, Rejected) and result.code == "currency_mismatch"
    await store.post_one(P, entry(*mixed, multi=True))
    assert await balances(store, "cash", "usd_cash") == {"cash": 100, "usd_cash": 7}
    assert await entry_count(pool) == 1


# -- reading ------------------------------------------------------------------------------------


async def test_balance_as_of_a_past_instant_is_the_balance_then(store, pool):
    instants = [await now(pool)]
    expected = [{"cash": 0, "capital": 0, "costs": 0}]
    for draft, after in [
        (fund(100), {"cash": 100, "capital": 100, "costs": 0}),
        (fund(50), {"cash": 150, "capital": 150, "costs": 0}),
        (spend(30), {"cash": 120, "capital": 150, "costs": 30}),
        (spend(120), {"cash": 0, "capital": 150, "costs": 150}),
    ]:
        await store.post_one(P, draft)
        instants.append(await now(pool))
        expected.append(after)
    for instant, want in zip(instants, expected, strict=True):
        assert await store.balances(P, list(want), as_of=instant) == want
    assert await balances(store, "cash", "capital", "costs") == expected[-1]


@pytest.mark.parametrize("limit", [1, 5, 23, 50])
async def test_statement_pages_visit_every_posting_once_in_order(store, limit):
    amounts = [random.randint(1, 1000) for _ in range(23)]
    await store.post(P, [fund(a) for a in amounts[:10]])  # several postings per account in one batch
    for a in amounts[10:]:
        await store.post_one(P, fund(a))
    lines, cursor, pages = [], None, 0
    while True:
        page = await store.statement(P, "cash", after_version=cursor, limit=limit)
        pages += 1
        assert len(page.lines) <= limit
        lines.extend(page.lines)
        if page.next_cursor is None:
            break
        assert page.next_cursor == page.lines[-1].account_version
        cursor = page.next_cursor
    assert pages == -(-len(amounts) // limit)
    assert [line.account_version for line in lines] == list(range(1, 24))
    assert len({line.posting_id for line in lines}) == 23
    assert [line.amount for line in lines] == amounts
    assert [line.balance_after for line in lines] == list(itertools.accumulate(amounts))


async def test_trial_balance_is_zero_across_kinds_and_currencies(store):
    await store.post(
        P,
        [
            fund(10_000),
            entry(("cash", 5000), ("seller_a", -4500), ("fees", -500)),  # a capture
            entry(("seller_a", 1500), ("seller_b", -1500)),  # a transfer between sellers
            entry(("costs", 200), ("cash", -200)),
            entry(("usd_cash", 70), ("usd_capital", -70), ("cash", 1), ("capital", -1), multi=True),
        ],
    )
    trial = await store.trial_balance(P)
    assert trial.totals == {"IDR": 0, "USD": 0}
    assert trial.is_balanced
    assert {line.account: line.balance for line in trial.lines} == {
        "capital": 10_001,
        "cash": 14_801,
        "costs": 200,
        "fees": 500,
        "seller_a": 3000,
        "seller_b": 1500,
        "usd_capital": 70,
        "usd_cash": 70,
    }


async def test_get_entry_returns_its_postings_and_only_on_its_platform(store):
    posted = await store.post_one(P, entry(("cash", 5000), ("seller_a", -4500), ("fees", -500), kind="capture"))
    stored = await store.get_entry(P, posted.entry_id)
    assert stored.kind == "capture"
    assert [(p.account, p.amount, p.balance_after) for p in stored.postings] == [
        ("cash", 5000, 5000),
        ("seller_a", -4500, 4500),
        ("fees", -500, 500),
    ]
    for platform, entry_id in [("p2", posted.entry_id), (P, posted.entry_id + 1000)]:
        with pytest.raises(errors.EntryNotFound) as raised:
            await store.get_entry(platform, entry_id)
        assert raised.value.code == "entry_not_found"


# -- concurrency --------------------------------------------------------------------------------

TASKS = 20
ENTRIES_PER_TASK = 20


async def test_many_tasks_posting_to_the_same_hot_accounts_end_exact(store, database_url):
    """Each task owns its transactions (``conn=``), so a deadlock would surface here instead of being retried."""
    rng = random.Random(20240601)
    plans = [
        [
            (rng.randint(1, 10_000), rng.randint(1, 500), rng.choice(["seller_a", "seller_b"]))
            for _ in range(ENTRIES_PER_TASK)
        ]
        for _ in range(TASKS)
    ]

    async def run(task: int, pool: asyncpg.Pool) -> None:
        shuffle = random.Random(task)
        async with pool.acquire() as conn:
            for n, (cash, share, seller) in enumerate(plans[task]):
                legs = [("cash", cash), ("capital", -cash), (seller, -share), ("capital", share)]
                shuffle.shuffle(legs)  # every lock order a client could ask for
                draft = entry(*legs, key=f"t{task}-{n}")
                if n % 2:
                    async with conn.transaction():
                        (result,) = await store.post(P, [draft], conn=conn)
                else:
                    (result,) = await store.post(P, [draft])  # the store's own transaction
                assert isinstance(result, Posted), result

    pool = await create_pool(database_url, min_size=TASKS, max_size=TASKS + 2)
    try:
        await asyncio.gather(*(run(task, pool) for task in range(TASKS)))
    finally:
        await pool.close()
    flat = [step for plan in plans for step in plan]
    assert await balances(store, "cash", "capital", "seller_a", "seller_b") == {
        "cash": sum(c for c, _, _ in flat),
        "capital": sum(c - s for c, s, _ in flat),
        "seller_a": sum(s for _, s, who in flat if who == "seller_a"),
        "seller_b": sum(s for _, s, who in flat if who == "seller_b"),
    }
    statement = await store.statement(P, "cash", limit=TASKS * ENTRIES_PER_TASK)
    assert [line.account_version for line in statement.lines] == list(range(1, TASKS * ENTRIES_PER_TASK + 1))
    assert (await store.trial_balance(P)).is_balanced


async def test_one_key_posted_concurrently_with_different_content_is_posted_once(store, pool):
    # each contender uses its own accounts, so nothing but the key's unique index orders them
    await store.open_accounts(P, [AccountSpec(code=f"race_{i}", kind="asset", allow_negative=True) for i in range(16)])
    contenders = [entry((f"race_{2 * i}", i + 1), (f"race_{2 * i + 1}", -(i + 1)), key="race") for i in range(8)]
    results = await asyncio.gather(*(store.post(P, [d]) for d in contenders))
    flat = [r for (r,) in results]
    assert sum(isinstance(r, Posted) for r in flat) == 1
    assert all(r.code == "idempotency_conflict" for r in flat if isinstance(r, Rejected))
    assert await entry_count(pool) == 1


async def test_one_draft_posted_concurrently_is_posted_once_and_replayed_to_the_rest(store, pool):
    draft = fund(77, key="dup")
    results = await asyncio.gather(*(store.post_one(P, draft) for _ in range(8)))
    assert len({r.entry_id for r in results}) == 1
    assert sorted(r.replayed for r in results) == [False] + [True] * 7
    assert await balances(store, "cash") == {"cash": 77}
