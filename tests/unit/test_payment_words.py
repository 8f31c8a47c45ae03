"""DOKU's words about payments, batched: applying a batch round by round ends where applying each
word in arrival order would, contradictions included (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledger.orders import PaymentAction, in_arrival_rounds, payment_action

INVOICES = ["A", "B", "C"]
STATUSES = ["SUCCESS", "FAILED", "EXPIRED", "TIMEOUT", "PENDING", "success", "expired"]


def test_statuses_map_to_their_actions():
    assert [payment_action(s) for s in ("SUCCESS", "success", "FAILED", "EXPIRED", "TIMEOUT", "PENDING", "")] == [
        "capture",
        "capture",
        "fail",
        "expire",
        "expire",
        "ignore",
        "ignore",
    ]


def _apply_one(state: dict[str, str], invoice: str, action: PaymentAction) -> str:
    """The reference: one word at a time, as the rules in ledger.orders (and docs/order-states.md)
    say: a word that contradicts the order's state is a conflict and changes nothing."""
    status = state.get(invoice, "pending")
    if action == "capture":
        if status == "captured":
            return "duplicate"
        if status in ("failed", "expired"):
            return "conflict"
        state[invoice] = "captured"
        return "captured"
    if action in ("fail", "expire"):
        if status == "captured":
            return "conflict"
        if status != "pending":
            return "ignored"
        state[invoice] = "failed" if action == "fail" else "expired"
        return "closed"
    return "ignored"


def _apply_rounds(words: list[tuple[str, PaymentAction]]) -> tuple[dict[str, str], list[str]]:
    """A round at a time: all its captures first, then all its closes (as the batch applies them)."""
    state: dict[str, str] = {}
    outcomes = [""] * len(words)
    for round_ in in_arrival_rounds(words):
        for i in round_:
            if words[i][1] == "capture":
                outcomes[i] = _apply_one(state, *words[i])
        for i in round_:
            if words[i][1] != "capture":
                outcomes[i] = _apply_one(state, *words[i])
    return state, outcomes


@given(st.lists(st.tuples(st.sampled_from(INVOICES), st.sampled_from(STATUSES)), max_size=12))
def test_rounds_end_where_one_word_at_a_time_would(raw):
    words = [(invoice, payment_action(status)) for invoice, status in raw]
    sequential: dict[str, str] = {}
    expected = [_apply_one(sequential, invoice, action) for invoice, action in words]
    state, outcomes = _apply_rounds(words)
    assert (state, outcomes) == (sequential, expected)
    rounds = in_arrival_rounds(words)
    assert [i for r in rounds for i in r] == list(range(len(words)))  # every word once, in arrival order


def test_a_batch_without_a_capture_and_a_close_of_one_invoice_is_one_round():
    words: list[tuple[str, PaymentAction]] = [("A", "capture"), ("B", "expire"), ("A", "capture"), ("C", "ignore")]
    assert in_arrival_rounds(words) == [[0, 1, 2, 3]]
    assert in_arrival_rounds([("A", "expire"), ("A", "capture"), ("A", "fail")]) == [[0], [1], [2]]
