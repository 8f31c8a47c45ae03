"""The real ``LedgerStore`` on real PostgreSQL against a tiny pure model of the books.

Rules open accounts, post random balanced entries, replay and conflict on idempotency keys,
overdraw, retry rejected entries and post mixed batches. After every step the books must agree
with the model and with themselves: the trial balance is zero; every balance equals the sum of its
postings and the running balance of its last posting; balances at remembered past instants are
what they were then; rejected entries leave no rows.

Each example runs on its own platform in one database, through its own ``asyncio.Runner``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from api.database import create_pool
from ledger import errors
from ledger.journal import build_entry
from ledger.model import AccountSpec, EntryDraft, Posted, PostResult, Rejected
from ledger.store import LedgerStore

KINDS = ["asset", "liability", "equity", "revenue", "expense"]
ERROR_FOR_CODE: dict[str, type[errors.LedgerError]] = {
    "idempotency_conflict": errors.IdempotencyConflict,
    "unknown_account": errors.UnknownAccount,
    "insufficient_funds": errors.InsufficientFunds,
    "currency_mismatch": errors.InvalidEntry,
    "unbalanced": errors.InvalidEntry,
    "invalid_entry": errors.InvalidEntry,
}
_platforms = itertools.count(1)


def sign(kind: str) -> int:
    return 1 if kind in ("asset", "expense") else -1


# -- the model ----------------------------------------------------------------------------------


@dataclass
class Books:
    """What the ledger should hold: plain dicts, no I/O."""

    accounts: dict[str, AccountSpec] = field(default_factory=dict)
    balance: dict[str, int] = field(default_factory=dict)
    postings: dict[str, int] = field(default_factory=dict)  # code -> number of postings
    entries: dict[str, tuple[EntryDraft, int]] = field(default_factory=dict)  # key -> (draft, entry_id)

    def rejection(self, draft: EntryDraft, balance: dict[str, int]) -> str | None:
        """Why the store must refuse ``draft`` given ``balance`` (the batch so far), or None."""
        if any(p.account not in self.accounts for p in draft.postings):
            return "unknown_account"
        per_currency: dict[str, int] = {}
        for p in draft.postings:
            currency = self.accounts[p.account].currency
            per_currency[currency] = per_currency.get(currency, 0) + p.amount
        if len(per_currency) > 1 and not draft.multi_currency:
            return "currency_mismatch"
        if any(per_currency.values()):
            return "unbalanced"
        running = dict(balance)
        for p in draft.postings:
            spec = self.accounts[p.account]
            running[p.account] += p.amount * sign(spec.kind)
            if running[p.account] < 0 and not spec.allow_negative:  # checked posting by posting
                return "insufficient_funds"
        return None

    def expect(self, drafts: list[EntryDraft]) -> list[tuple[str, object]]:
        """The store's per-entry results for a batch, as (outcome, detail), without applying them.

        Outcomes: ("posted", key), ("replayed", entry_id), ("replayed_in_batch", key), ("rejected", code).
        """
        balance = dict(self.balance)
        accepted: dict[str, EntryDraft] = {}
        outcomes: list[tuple[str, object]] = []
        for draft in drafts:
            key = draft.idempotency_key
            if key in self.entries:
                stored, entry_id = self.entries[key]
                same = same_content(stored, draft)
                outcomes.append(("replayed", entry_id) if same else ("rejected", "idempotency_conflict"))
            elif key in accepted:
                same = same_content(accepted[key], draft)
                outcomes.append(("replayed_in_batch", key) if same else ("rejected", "idempotency_conflict"))
            elif (code := self.rejection(draft, balance)) is not None:
                outcomes.append(("rejected", code))
            else:
                for p in draft.postings:
                    balance[p.account] += p.amount * sign(self.accounts[p.account].kind)
                accepted[key] = draft
                outcomes.append(("posted", key))
        return outcomes

    def apply(self, draft: EntryDraft, entry_id: int) -> None:
        for p in draft.postings:
            self.balance[p.account] += p.amount * sign(self.accounts[p.account].kind)
            self.postings[p.account] += 1
        self.entries[draft.idempotency_key] = (draft, entry_id)


def same_content(a: EntryDraft, b: EntryDraft) -> bool:
    """The model's own notion of "same entry": equal in everything but the key."""
    return msgspec.structs.replace(a, idempotency_key="") == msgspec.structs.replace(b, idempotency_key="")


# -- the machine --------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    database_url: str = ""  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        self.platform = f"sm-{os.getpid()}-{next(_platforms)}"
        self.pool = self.run(create_pool(self.database_url, min_size=1, max_size=2))
        self.store = LedgerStore(self.pool)
        self.run(self.pool.execute("INSERT INTO platforms (platform_id, name) VALUES ($1, 'machine')", self.platform))
        self.books = Books()
        self.account_ids: dict[str, int] = {}
        self.rejected: dict[str, EntryDraft] = {}  # key -> draft, for keys with no entry
        self.history: list[tuple[datetime, dict[str, int]]] = []
        self.keys = itertools.count(1)

    def run(self, coroutine):
        return self.runner.run(coroutine)

    def teardown(self) -> None:
        try:
            self.run(self.pool.close())
        finally:
            self.runner.close()

    # -- helpers --

    def currencies(self) -> list[str]:
        by_currency: dict[str, int] = {}
        for spec in self.books.accounts.values():
            by_currency[spec.currency] = by_currency.get(spec.currency, 0) + 1
        return sorted(c for c, n in by_currency.items() if n >= 2)

    def accounts_in(self, currency: str) -> list[str]:
        return sorted(code for code, spec in self.books.accounts.items() if spec.currency == currency)

    def new_key(self) -> str:
        return f"e{next(self.keys)}"

    def draw_entry(self, data: st.DataObject, *, key: str | None = None, currency: str | None = None) -> EntryDraft:
        """1-4 legs, each a debit and a credit of the same amount, in one currency."""
        currency = currency or data.draw(st.sampled_from(self.currencies()), label="currency")
        codes = self.accounts_in(currency)
        funders = [c for c in codes if self.books.accounts[c].allow_negative]
        postings: list[tuple[str, int]] = []
        for _ in range(data.draw(st.integers(1, 4), label="legs")):
            amount = data.draw(st.integers(1, 1000), label="amount")
            if funders and data.draw(st.booleans(), label="funding leg"):
                # raise an account's balance from one that may go negative: keeps the books growing
                target = data.draw(st.sampled_from(codes), label="funded")
                source = data.draw(st.sampled_from(funders), label="funder")
                signed = amount * sign(self.books.accounts[target].kind)
                postings += [(target, signed), (source, -signed)]
            else:
                debit = data.draw(st.sampled_from(codes), label="debit")
                credit = data.draw(st.sampled_from(codes), label="credit")
                postings += [(debit, amount), (credit, -amount)]
        postings = data.draw(st.permutations(postings), label="order")
        kind = data.draw(st.sampled_from(["capture", "refund", "transfer"]), label="kind")
        return build_entry(kind=kind, idempotency_key=key or self.new_key(), postings=postings)

    def draw_overdraft(self, data: st.DataObject) -> EntryDraft:
        """Take more out of a non-negative account than it holds."""
        candidates = [
            code
            for code, spec in self.books.accounts.items()
            if not spec.allow_negative and len(self.accounts_in(spec.currency)) >= 2
        ]
        code = data.draw(st.sampled_from(sorted(candidates)), label="overdrawn")
        spec = self.books.accounts[code]
        other = data.draw(st.sampled_from([c for c in self.accounts_in(spec.currency) if c != code]), label="other")
        amount = self.books.balance[code] + data.draw(st.integers(1, 500), label="excess")
        taken = -amount * sign(spec.kind)
        return build_entry(kind="payout", idempotency_key=self.new_key(), postings=[(code, taken), (other, -taken)])

    def draw_conflict(self, data: st.DataObject) -> EntryDraft:
        key = data.draw(st.sampled_from(sorted(self.books.entries)), label="conflicting key")
        draft, _ = self.books.entries[key]
        change = data.draw(st.sampled_from(["kind", "amounts", "order"]), label="change")
        if change == "kind":
            return msgspec.structs.replace(draft, kind=draft.kind + "-other")
        if change == "amounts":
            doubled = [(p.account, p.amount * 2) for p in draft.postings]
            return build_entry(kind=draft.kind, idempotency_key=key, postings=doubled)
        flipped = tuple(reversed(draft.postings))
        return msgspec.structs.replace(draft, postings=flipped, external_ref=f"{draft.external_ref}!")

    def post_and_check(self, drafts: list[EntryDraft], *, one: bool = False) -> list[PostResult]:
        """Post through the store and hold every result to the model's expectation."""
        expected = self.books.expect(drafts)
        if one:
            (draft,), ((outcome, detail),) = drafts, expected
            try:
                results: list[PostResult] = [self.run(self.store.post_one(self.platform, draft))]
            except errors.LedgerError as exc:
                assert outcome == "rejected", f"post_one raised {exc.code}, model expected {outcome}"
                assert type(exc) is ERROR_FOR_CODE[detail], (type(exc), detail)
                results = [Rejected(code=detail, detail="raised")]
        else:
            results = self.run(self.store.post(self.platform, drafts))
        assert len(results) == len(drafts)
        posted_now: dict[str, int] = {}
        for draft, result, (outcome, detail) in zip(drafts, results, expected, strict=True):
            match outcome:
                case "posted":
                    assert isinstance(result, Posted) and not result.replayed, (result, outcome)
                    posted_now[draft.idempotency_key] = result.entry_id
                    self.books.apply(draft, result.entry_id)
                    self.rejected.pop(draft.idempotency_key, None)
                case "replayed":
                    assert result == Posted(entry_id=detail, replayed=True), (result, outcome)
                case "replayed_in_batch":
                    assert result == Posted(entry_id=posted_now[detail], replayed=True), (result, outcome)
                case "rejected":
                    assert isinstance(result, Rejected) and result.code == detail, (result, detail)
                    if draft.idempotency_key not in self.books.entries and draft.idempotency_key not in posted_now:
                        self.rejected[draft.idempotency_key] = draft
        return results

    # -- rules --

    @initialize()
    def open_starter_accounts(self) -> None:
        self.open(
            [
                AccountSpec(code="cash", kind="asset"),
                AccountSpec(code="capital", kind="equity", allow_negative=True),
                AccountSpec(code="seller", kind="liability"),
                AccountSpec(code="usd-cash", kind="asset", currency="USD"),
                AccountSpec(code="usd-capital", kind="equity", currency="USD", allow_negative=True),
            ]
        )

    def open(self, specs: list[AccountSpec]) -> None:
        opened = self.run(self.store.open_accounts(self.platform, specs))
        for spec, account in zip(specs, opened, strict=True):
            assert (account.code, account.kind, account.currency, account.allow_negative) == (
                spec.code,
                spec.kind,
                spec.currency,
                spec.allow_negative,
            )
            assert account.balance == 0 and account.version == 0
            self.books.accounts[spec.code] = spec
            self.books.balance[spec.code] = 0
            self.books.postings[spec.code] = 0
            self.account_ids[spec.code] = account.account_id

    @precondition(lambda self: len(self.books.accounts) < 12)
    @rule(kind=st.sampled_from(KINDS), allow_negative=st.booleans(), currency=st.sampled_from(["IDR", "IDR", "USD"]))
    def open_account(self, kind: str, allow_negative: bool, currency: str) -> None:
        code = f"{kind}-{currency.lower()}-{len(self.books.accounts)}"
        self.open([AccountSpec(code=code, kind=kind, currency=currency, allow_negative=allow_negative)])

    @rule(data=st.data())
    def reopen_account(self, data: st.DataObject) -> None:
        code = data.draw(st.sampled_from(sorted(self.books.accounts)), label="reopened")
        spec = self.books.accounts[code]
        if data.draw(st.booleans(), label="same spec"):
            (account,) = self.run(self.store.open_accounts(self.platform, [spec]))
            assert (account.account_id, account.balance) == (self.account_ids[code], self.books.balance[code])
        else:
            other = msgspec.structs.replace(spec, allow_negative=not spec.allow_negative)
            try:
                self.run(self.store.open_accounts(self.platform, [other]))
            except errors.AccountExists:
                pass
            else:
                raise AssertionError("reopening with another spec must be account_exists")

    @rule(data=st.data(), one=st.booleans())
    def post_entry(self, data: st.DataObject, one: bool) -> None:
        self.post_and_check([self.draw_entry(data)], one=one)

    @precondition(lambda self: self.books.entries)
    @rule(data=st.data(), one=st.booleans())
    def replay_entry(self, data: st.DataObject, one: bool) -> None:
        key = data.draw(st.sampled_from(sorted(self.books.entries)), label="replayed key")
        draft, entry_id = self.books.entries[key]
        (result,) = self.post_and_check([_rebuilt(draft)], one=one)
        assert result == Posted(entry_id=entry_id, replayed=True)

    @precondition(lambda self: self.books.entries)
    @rule(data=st.data(), one=st.booleans())
    def conflicting_replay(self, data: st.DataObject, one: bool) -> None:
        (result,) = self.post_and_check([self.draw_conflict(data)], one=one)
        assert isinstance(result, Rejected) and result.code == "idempotency_conflict"

    @rule(data=st.data(), one=st.booleans())
    def overdraw(self, data: st.DataObject, one: bool) -> None:
        (result,) = self.post_and_check([self.draw_overdraft(data)], one=one)
        assert isinstance(result, Rejected) and result.code == "insufficient_funds"

    @precondition(lambda self: self.rejected)
    @rule(data=st.data())
    def retry_rejected(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.rejected)), label="retried key")
        self.post_and_check([self.rejected[key]])

    @rule(data=st.data())
    def post_batch(self, data: st.DataObject) -> None:
        drafts: list[EntryDraft] = []
        for _ in range(data.draw(st.integers(2, 6), label="batch size")):
            choices = ["fresh", "fresh", "overdraft", "unknown"]
            if self.books.entries:
                choices += ["replay", "conflict"]
            if drafts:
                choices += ["repeat", "repeat-conflict"]
            if len(self.currencies()) > 1:
                choices += ["mixed", "multi"]
            match data.draw(st.sampled_from(choices), label="batch item"):
                case "fresh":
                    drafts.append(self.draw_entry(data))
                case "overdraft":
                    drafts.append(self.draw_overdraft(data))
                case "unknown":
                    legit = self.draw_entry(data)
                    first = legit.postings[0]
                    nowhere = msgspec.structs.replace(first, account="nowhere")
                    drafts.append(msgspec.structs.replace(legit, postings=(nowhere, *legit.postings[1:])))
                case "replay":
                    key = data.draw(st.sampled_from(sorted(self.books.entries)), label="replayed key")
                    drafts.append(_rebuilt(self.books.entries[key][0]))
                case "conflict":
                    drafts.append(self.draw_conflict(data))
                case "repeat":
                    drafts.append(data.draw(st.sampled_from(drafts), label="repeated"))
                case "repeat-conflict":
                    earlier = data.draw(st.sampled_from(drafts), label="repeated")
                    drafts.append(self.draw_entry(data, key=earlier.idempotency_key))
                case "mixed" | "multi" as how:
                    # balanced in each currency; only a multi_currency entry may hold both
                    idr, usd = (self.draw_entry(data, key="_", currency=c) for c in ("IDR", "USD"))
                    drafts.append(
                        msgspec.structs.replace(
                            idr,
                            idempotency_key=self.new_key(),
                            postings=idr.postings + usd.postings,
                            multi_currency=how == "multi",
                        )
                    )
        self.post_and_check(drafts)

    @precondition(lambda self: len(self.history) < 8)
    @rule()
    def remember_now(self) -> None:
        instant = self.run(self.pool.fetchval("SELECT clock_timestamp()"))
        self.history.append((instant, dict(self.books.balance)))

    # -- invariants --

    @invariant()
    def books_agree_with_the_model_and_themselves(self) -> None:
        self.run(self._check_books())

    async def _check_books(self) -> None:
        async with self.pool.acquire() as conn:
            trial = await self.store.trial_balance(self.platform, conn=conn)
            assert trial.is_balanced and set(trial.totals.values()) <= {0}, trial.totals
            assert {line.account: line.balance for line in trial.lines} == self.books.balance

            rows = await conn.fetch(
                """
                SELECT a.code, a.balance, a.version, a.normal_sign,
                       coalesce(sum(p.amount), 0) AS total, count(p.posting_id) AS n,
                       (SELECT q.balance_after FROM postings q
                         WHERE q.platform_id = a.platform_id AND q.account_id = a.account_id
                         ORDER BY q.account_version DESC LIMIT 1) AS last_balance
                  FROM accounts a
                  LEFT JOIN postings p ON p.platform_id = a.platform_id AND p.account_id = a.account_id
                 WHERE a.platform_id = $1
                 GROUP BY a.platform_id, a.account_id
                """,
                self.platform,
            )
            for r in rows:
                want = self.books.balance[r["code"]]
                assert r["balance"] == r["total"] * r["normal_sign"] == (r["last_balance"] or 0) == want, dict(r)
                assert r["version"] == r["n"] == self.books.postings[r["code"]], dict(r)

            keys = await conn.fetch("SELECT idempotency_key FROM journal_entries WHERE platform_id = $1", self.platform)
            assert {k["idempotency_key"] for k in keys} == set(self.books.entries)  # no trace of rejections

            for instant, then in self.history:
                assert await self.store.balances(self.platform, list(then), as_of=instant, conn=conn) == then


def _rebuilt(draft: EntryDraft) -> EntryDraft:
    """An equal draft built afresh, as a client retrying a request would send it."""
    return msgspec.json.decode(msgspec.json.encode(draft), type=EntryDraft)


def test_ledger_matches_its_model(machine_database_url: str) -> None:
    LedgerMachine.database_url = machine_database_url
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=int(os.environ.get("LEDGER_MACHINE_EXAMPLES", "120")),
            stateful_step_count=35,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
