"""Undoing an allocation when money goes back: proportional from cumulative targets, or explicit."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from ledger.money import allocate_largest_remainder
from ledger.split import (
    DOKU_FEE,
    PLATFORM,
    Allocation,
    CartPolicy,
    ExplicitPolicy,
    FeePolicy,
    LineItem,
    RefundPolicy,
    Reversal,
    ReversalDoesNotSum,
    ReversalExceedsAllocation,
    ReversalExceedsCaptured,
    ReversalNotPositive,
    ReversalRejected,
    ReversalUnknownParty,
    ReversalWrongDirection,
    Share,
    allocate,
    line_budgets,
    line_item_parts,
    reversal_budget,
    reverse,
    sum_reversals,
)
from tests.unit.test_split_allocation import SELLERS, allocations, cart_orders, three_seller_cart

FAST = settings(max_examples=200, deadline=None)

refund_policies = st.builds(
    RefundPolicy,
    refund_commission=st.booleans(),
    fee_absorbed_by=st.sampled_from(["platform", "sellers"]),
    doku_refunds_fee=st.booleans(),
)


@st.composite
def small_allocations(draw) -> Allocation:
    """Tiny orders with several parties: largest remainder moves targets backwards often here."""
    amounts = draw(st.lists(st.integers(min_value=0, max_value=15), min_size=3, max_size=len(SELLERS)))
    gross = sum(amounts)
    assume(gross > 0)
    policy = ExplicitPolicy(
        shares=tuple(Share(party=seller, fixed=amount) for seller, amount in zip(SELLERS, amounts[1:], strict=False)),
        remainder_to=draw(st.sampled_from((PLATFORM, SELLERS[-1]))),
    )
    fee_policy = FeePolicy(fixed=draw(st.integers(min_value=0, max_value=min(2, gross))), bearer="platform")
    return allocate(gross, [], policy, fee_policy)


any_allocations = allocations() | small_allocations()


@st.composite
def refund_chains(draw, gross: int) -> list[int]:
    """Positive refund amounts that add up to the gross."""
    if gross == 1:
        return [1]
    cuts = sorted(draw(st.lists(st.integers(min_value=1, max_value=gross - 1), unique=True, max_size=8)))
    bounds = [0, *cuts, gross]
    return [high - low for low, high in itertools.pairwise(bounds)]


def run_chain(allocation: Allocation, amounts: list[int], policy: RefundPolicy) -> list[Reversal]:
    reversals: list[Reversal] = []
    for amount in amounts:
        already = sum_reversals(reversals) if reversals else None
        reversals.append(reverse(allocation, already, amount, policy))
    return reversals


def between_zero_and(budget: int, value: int) -> bool:
    return 0 <= value <= budget if budget >= 0 else budget <= value <= 0


def example1() -> Allocation:
    return allocate(187_500, three_seller_cart(), CartPolicy(commission_bps=500), FeePolicy(bps=150))


# --- properties ------------------------------------------------------------------------------


@FAST
@given(allocation=any_allocations, policy=refund_policies)
def test_budgets_sum_to_the_gross_and_only_the_platform_can_be_negative(
    allocation: Allocation, policy: RefundPolicy
) -> None:
    budget = reversal_budget(allocation, policy)
    assert sum(budget.values()) == allocation.gross
    assert set(budget) == set(allocation.parts())
    assert all(value >= 0 for party, value in budget.items() if party != PLATFORM)
    assert budget[DOKU_FEE] == (allocation.fee if policy.doku_refunds_fee else 0)


@FAST
@given(allocation=any_allocations, policy=refund_policies, data=st.data())
def test_one_refund_is_within_one_rupiah_of_each_partys_exact_share(
    allocation: Allocation, policy: RefundPolicy, data
) -> None:
    amount = data.draw(st.integers(min_value=1, max_value=allocation.gross))
    budget = reversal_budget(allocation, policy)
    reversal = reverse(allocation, None, amount, policy)
    assert sum(reversal.parts().values()) == amount == reversal.amount
    for party, value in reversal.parts().items():
        share = Fraction(amount * budget[party], allocation.gross)
        assert math.floor(share) <= value <= math.ceil(share), party
        if budget[party] == 0:
            assert value == 0  # zero weight gets zero


@FAST
@given(allocation=any_allocations, policy=refund_policies, data=st.data())
def test_any_chain_of_partial_refunds_sums_to_the_full_reversal(
    allocation: Allocation, policy: RefundPolicy, data
) -> None:
    amounts = data.draw(refund_chains(allocation.gross))
    total = sum_reversals(run_chain(allocation, amounts, policy))
    assert total.parts() == reversal_budget(allocation, policy)
    assert total == reverse(allocation, None, allocation.gross, policy)  # a full refund in one step


@FAST
@given(allocation=any_allocations, policy=refund_policies, data=st.data())
def test_no_party_is_ever_reversed_beyond_its_budget_nor_backwards(
    allocation: Allocation, policy: RefundPolicy, data
) -> None:
    amounts = data.draw(refund_chains(allocation.gross))
    budget = reversal_budget(allocation, policy)
    reversals = run_chain(allocation, amounts, policy)
    for step, reversal in enumerate(reversals):
        assert reversal.amount == amounts[step]
        assert sum(reversal.parts().values()) == reversal.amount
        cumulative = sum_reversals(reversals[: step + 1]).parts()
        for party, value in reversal.parts().items():
            assert between_zero_and(budget[party], value), (party, value)  # never backwards
            assert between_zero_and(budget[party], cumulative[party]), (party, cumulative[party])


@FAST
@given(allocation=allocations(), data=st.data())
def test_under_the_default_policy_sellers_stay_within_their_net_and_the_platform_within_its_share_plus_fee(
    allocation: Allocation, data
) -> None:
    amounts = data.draw(refund_chains(allocation.gross))
    nets = {s.seller_id: s.net for s in allocation.sellers}
    reversals = run_chain(allocation, amounts, RefundPolicy())
    for step in range(len(reversals)):
        cumulative = sum_reversals(reversals[: step + 1])
        assert cumulative.fee == 0  # DOKU keeps its fee
        assert all(0 <= cumulative.sellers[seller] <= nets[seller] for seller in nets)
        assert 0 <= cumulative.platform <= allocation.platform + allocation.fee
    assert sum_reversals(reversals).platform == allocation.platform + allocation.fee


@FAST
@given(allocation=any_allocations, policy=refund_policies, data=st.data())
def test_a_chain_is_path_independent_whenever_the_targets_only_move_forward(
    allocation: Allocation, policy: RefundPolicy, data
) -> None:
    # After refunds totalling R, every party has been reversed exactly the target of R, unless
    # largest remainder moved some target backwards on the way (then it catches up later).
    amounts = data.draw(refund_chains(allocation.gross))
    budget = reversal_budget(allocation, policy)
    reversals = run_chain(allocation, amounts, policy)
    refunded, previous = 0, dict.fromkeys(budget, 0)
    for step, amount in enumerate(amounts):
        refunded += amount
        target = allocate_largest_remainder(refunded, budget)
        if any(not between_zero_and(budget[p] - previous[p], target[p] - previous[p]) for p in budget):
            event("a target moved backwards")
            return
        assert sum_reversals(reversals[: step + 1]).parts() == target
        previous = target


# --- the give-back rule, implemented again from docs/split-rules.md §3.2 -----------------------


def largest_remainder_as_written(total: int, weights: dict[str, int]) -> dict[str, int]:
    """§1 in exact fractions: floors, then one rupiah each by remainder, weight, key."""
    whole = sum(weights.values())
    exact_ = {k: Fraction(total * w, whole) for k, w in weights.items()}
    parts = {k: math.floor(v) for k, v in exact_.items()}
    ranked = sorted(weights, key=lambda k: (-(exact_[k] - parts[k]), -weights[k], k))
    for k in ranked[: total - sum(parts.values())]:
        parts[k] += 1
    return parts


def step_as_written(budget: dict[str, int], before: dict[str, int], amount: int) -> dict[str, int]:
    """Bounds, held steps, and the surplus off the steps / the shortfall onto what is left."""
    target = largest_remainder_as_written(sum(before.values()) + amount, budget)
    lo = {p: 0 if budget[p] >= 0 else budget[p] - before[p] for p in budget}
    hi = {p: budget[p] - before[p] if budget[p] >= 0 else 0 for p in budget}
    step = {p: min(max(target[p] - before[p], lo[p]), hi[p]) for p in budget}
    k = sum(step.values()) - amount
    if k > 0:
        less = largest_remainder_as_written(k, {p: step[p] - lo[p] for p in budget})
        step = {p: step[p] - less[p] for p in budget}
    elif k < 0:
        more = largest_remainder_as_written(-k, {p: hi[p] - step[p] for p in budget})
        step = {p: step[p] + more[p] for p in budget}
    return step


@FAST
@given(allocation=any_allocations, policy=refund_policies, data=st.data())
def test_every_step_of_a_chain_is_the_give_back_rule_as_written(allocation: Allocation, policy: RefundPolicy, data):
    amounts = data.draw(refund_chains(allocation.gross))
    budget = reversal_budget(allocation, policy)
    before = dict.fromkeys(budget, 0)
    reversals: list[Reversal] = []
    for amount in amounts:
        reversal = reverse(allocation, sum_reversals(reversals) if reversals else None, amount, policy)
        target = largest_remainder_as_written(sum(before.values()) + amount, budget)
        if any(not between_zero_and(budget[p] - before[p], target[p] - before[p]) for p in budget):
            event("a target moved backwards: the give-back rule decided")
        assert reversal.parts() == step_as_written(budget, before, amount), (amount, before)
        reversals.append(reversal)
        before = {p: before[p] + reversal.parts()[p] for p in budget}


@settings(max_examples=600, deadline=None)
@given(allocation=small_allocations(), data=st.data())
def test_on_tiny_orders_where_targets_move_backwards_often_every_step_is_the_rule_as_written(allocation, data):
    budget = reversal_budget(allocation)
    amounts = data.draw(refund_chains(allocation.gross))
    before = dict.fromkeys(budget, 0)
    reversals: list[Reversal] = []
    for amount in amounts:
        reversal = reverse(allocation, sum_reversals(reversals) if reversals else None, amount)
        assert reversal.parts() == step_as_written(budget, before, amount), (amount, before)
        reversals.append(reversal)
        before = {p: before[p] + reversal.parts()[p] for p in budget}


def test_the_non_tie_give_back_example_takes_the_rupiah_by_step_not_by_what_is_left() -> None:
    shares = (Share(party="andi", fixed=30), Share(party="budi", fixed=6), Share(party="citra", fixed=1))
    toy = allocate(63, [], ExplicitPolicy(shares=shares, remainder_to="dewi"), FeePolicy())
    first = reverse(toy, None, 35)
    second = reverse(toy, first, 3)
    assert second.sellers == {"andi": 1, "budi": 1, "citra": 0, "dewi": 1}
    # Weighing the surplus by what each has left (13 / 3 / 0 / 12) would take it from andi.
    left = {p: b - first.parts()[p] for p, b in reversal_budget(toy).items() if b}
    assert largest_remainder_as_written(1, left) == {"andi": 1, "budi": 0, "citra": 0, "dewi": 0}


# --- refunds by line item --------------------------------------------------------------------


@st.composite
def line_item_chains(draw):
    """A cart order, its policy, and its items refunded in random groups until all are back."""
    order = draw(cart_orders())
    assume(not order.validate())
    units = [(index, unit) for index, item in enumerate(order.items) for unit in range(item.quantity)]
    shuffled = draw(st.permutations(units))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=max(1, len(units) - 1)), max_size=5)))
    groups, start = [], 0
    for cut in [*cuts, len(units)]:
        if cut > start:
            group: dict[int, int] = {}
            for index, _ in shuffled[start:cut]:
                group[index] = group.get(index, 0) + 1
            groups.append(group)
            start = cut
    return order, draw(refund_policies), groups


# The refund policies an order gets through the API: DOKU keeps its fee and the platform absorbs it.
API_POLICIES = (RefundPolicy(), RefundPolicy(refund_commission=False))


@FAST
@given(chain=line_item_chains(), policy=st.sampled_from(API_POLICIES))
def test_line_item_refunds_take_only_from_their_sellers_and_end_exactly_at_the_line_budgets(chain, policy) -> None:
    order, _, groups = chain
    allocation = order.allocate()
    budgets = line_budgets(allocation, policy)
    assert {p: sum(b.get(p, 0) for b in budgets.values()) for p in reversal_budget(allocation, policy)} == (
        reversal_budget(allocation, policy)
    )
    before: dict[int, int] = {}
    reversals: list[Reversal] = []
    for group in groups:
        parts = line_item_parts(allocation, order.items, before, group, policy)
        price = sum(order.items[i].price * q for i, q in group.items())
        assert sum(parts.values()) == price
        sellers_back = {order.items[i].seller_id for i in group}
        assert all(parts[s.seller_id] == 0 for s in allocation.sellers if s.seller_id not in sellers_back)
        reversal = reverse(allocation, sum_reversals(reversals) if reversals else None, price, policy, explicit=parts)
        reversals.append(reversal)
        for i, q in group.items():
            before[i] = before.get(i, 0) + q
    assert sum_reversals(reversals).parts() == reversal_budget(allocation, policy)


@FAST
@given(chain=line_item_chains())
def test_refunding_all_of_a_sellers_items_reverses_exactly_its_line_budget(chain) -> None:
    """Under any refund policy."""
    order, policy, _ = chain
    allocation = order.allocate()
    for seller, budget in line_budgets(allocation, policy).items():
        everything = {i: item.quantity for i, item in enumerate(order.items) if item.seller_id == seller}
        parts = line_item_parts(allocation, order.items, {}, everything, policy)
        assert {p: v for p, v in parts.items() if v} == {p: v for p, v in budget.items() if v}


@FAST
@given(chain=line_item_chains())
def test_under_any_policy_a_line_item_refund_is_exact_or_refused_never_beyond_a_budget(chain) -> None:
    # When DOKU refunds its fee or the sellers absorb it, a step may move a party backwards; then
    # ``reverse`` refuses it (docs/split-rules.md §3.4) instead of booking it.
    order, policy, groups = chain
    allocation = order.allocate()
    budget = reversal_budget(allocation, policy)
    before: dict[int, int] = {}
    reversals: list[Reversal] = []
    for group in groups:
        parts = line_item_parts(allocation, order.items, before, group, policy)
        price = sum(order.items[i].price * q for i, q in group.items())
        try:
            reversals.append(
                reverse(allocation, sum_reversals(reversals) if reversals else None, price, policy, explicit=parts)
            )
        except ReversalRejected as refused:
            event("refused")
            assert refused.code in ("reversal_wrong_direction", "reversal_exceeds_allocation")
            return
        for party, value in sum_reversals(reversals).parts().items():
            assert between_zero_and(budget[party], value)
        for i, q in group.items():
            before[i] = before.get(i, 0) + q
    assert sum_reversals(reversals).parts() == budget


def test_the_returned_coffee_is_taken_from_the_coffee_seller_and_the_commission_on_it_only() -> None:
    # The demo's cart: 2 batik (150 000, 5 %) and one coffee (85 000, kopi-kita's 3 %), DOKU's fee on the platform.
    items = [
        LineItem(name="Batik tulis", price=150_000, quantity=2, seller_id="batik-sari"),
        LineItem(name="Kopi Gayo 250 g", price=85_000, quantity=1, seller_id="kopi-kita"),
    ]
    policy = CartPolicy(commission_bps=500, seller_commission_bps={"kopi-kita": 300})
    allocation = allocate(385_000, items, policy, FeePolicy(bps=150, fixed=1_000))
    parts = line_item_parts(allocation, items, {}, {1: 1})
    assert parts == {"platform": 2_550, "doku_fee": 0, "batik-sari": 0, "kopi-kita": 82_450}
    assert reverse(allocation, None, 85_000, explicit=parts).sellers == {"batik-sari": 0, "kopi-kita": 82_450}


# --- examples in the marketplace's words -----------------------------------------------------


def test_a_full_refund_by_default_takes_back_every_net_and_the_platform_absorbs_dokus_fee() -> None:
    allocation = example1()
    reversal = reverse(allocation, None, 187_500)
    assert reversal.sellers == {"andi": 85_975, "budi": 60_799, "citra": 31_351}
    assert reversal.fee == 0
    assert reversal.platform == 6_562 + 2_813  # the platform ends at -2 813


def test_when_the_platform_keeps_its_commission_the_sellers_give_back_their_whole_subtotal() -> None:
    reversal = reverse(example1(), None, 187_500, RefundPolicy(refund_commission=False))
    assert reversal.sellers == {"andi": 90_500, "budi": 63_999, "citra": 33_001}
    assert reversal.platform == 0  # keeps 9 375 of commission, has lost the 2 813 fee


def test_when_the_sellers_absorb_dokus_fee_they_share_it_pro_rata_to_their_subtotals() -> None:
    reversal = reverse(example1(), None, 187_500, RefundPolicy(fee_absorbed_by="sellers"))
    assert reversal.sellers == {"andi": 85_975 + 1_358, "budi": 60_799 + 960, "citra": 31_351 + 495}
    assert reversal.platform == 6_562


def test_when_doku_refunds_its_fee_the_fee_is_reversed_pro_rata_too() -> None:
    half = reverse(example1(), None, 93_750, RefundPolicy(doku_refunds_fee=True))
    # Half of 2 813 / 85 975 / 60 799 / 31 351: four remainders of 0.5 compete for 2 rupiah and
    # the larger weights win: andi and budi round up, citra and DOKU's fee round down.
    assert half.parts() == {"platform": 3_281, "doku_fee": 1_406, "andi": 42_988, "budi": 30_400, "citra": 15_675}


def test_a_platform_that_gets_money_back_is_credited_on_each_refund() -> None:
    # DOKU refunds its fee and the platform keeps its commission: the platform gets back the fee
    # it bore at capture, so its budget and its reversals are negative.
    policy = RefundPolicy(doku_refunds_fee=True, refund_commission=False)
    allocation = example1()
    first = reverse(allocation, None, 60_000, policy)
    second = reverse(allocation, first, 127_500, policy)
    assert first.platform < 0 and second.platform < 0
    assert first.platform + second.platform == -2_813
    assert first.fee + second.fee == 2_813


def test_a_target_moving_backwards_holds_the_party_still_and_the_last_refund_catches_up() -> None:
    # The Alabama paradox: with budgets 1 / 3 / 3, refunding 3 then 1 moves andi's target from 1 to 0.
    policy = ExplicitPolicy(shares=(Share(party="andi", fixed=1), Share(party="budi", fixed=3)), remainder_to="citra")
    toy = allocate(7, [], policy, FeePolicy())
    assert allocate_largest_remainder(3, reversal_budget(toy))["andi"] == 1
    assert allocate_largest_remainder(4, reversal_budget(toy))["andi"] == 0
    first = reverse(toy, None, 3)
    second = reverse(toy, first, 1)
    last = reverse(toy, sum_reversals([first, second]), 3)
    assert [r.sellers for r in (first, second, last)] == [
        {"andi": 1, "budi": 1, "citra": 1},
        {"andi": 0, "budi": 0, "citra": 1},
        {"andi": 0, "budi": 2, "citra": 1},
    ]


def test_explicit_amounts_are_taken_as_given_and_later_proportional_refunds_still_end_at_the_budget() -> None:
    allocation = example1()
    returned_item = reverse(allocation, None, 21_333, explicit={"budi": 20_267, PLATFORM: 1_066})
    assert returned_item.parts() == {"platform": 1_066, "doku_fee": 0, "andi": 0, "budi": 20_267, "citra": 0}
    rest = reverse(allocation, returned_item, 187_500 - 21_333)
    assert sum_reversals([returned_item, rest]).parts() == reversal_budget(allocation)
    assert all(value >= 0 for value in rest.parts().values())


# --- refusals --------------------------------------------------------------------------------


def rejected(call) -> ReversalRejected:
    with pytest.raises(ReversalRejected) as raised:
        call()
    return raised.value


def test_refunding_more_than_was_captured_is_refused() -> None:
    allocation = example1()
    error = rejected(lambda: reverse(allocation, None, 187_501))
    assert isinstance(error, ReversalExceedsCaptured) and error.code == "refund_exceeds_captured"
    first = reverse(allocation, None, 100_000)
    assert rejected(lambda: reverse(allocation, first, 87_501)).code == "refund_exceeds_captured"
    assert reverse(allocation, first, 87_500).amount == 87_500


@pytest.mark.parametrize("amount", [0, -1])
def test_a_refund_must_be_positive(amount: int) -> None:
    error = rejected(lambda: reverse(example1(), None, amount))
    assert isinstance(error, ReversalNotPositive) and error.code == "non_positive_amount"


def test_explicit_amounts_must_add_up_to_the_refund() -> None:
    error = rejected(lambda: reverse(example1(), None, 1_000, explicit={"andi": 999}))
    assert isinstance(error, ReversalDoesNotSum) and error.code == "explicit_amounts_do_not_sum"


def test_explicit_amounts_must_name_parties_of_the_allocation() -> None:
    error = rejected(lambda: reverse(example1(), None, 1_000, explicit={"zaki": 1_000}))
    assert isinstance(error, ReversalUnknownParty) and error.code == "unknown_party"


def test_explicit_amounts_cannot_go_beyond_a_partys_budget() -> None:
    allocation = example1()
    error = rejected(lambda: reverse(allocation, None, 31_352, explicit={"citra": 31_352}))
    assert isinstance(error, ReversalExceedsAllocation) and error.code == "reversal_exceeds_allocation"
    # DOKU keeps its fee by default: its budget is zero.
    assert rejected(lambda: reverse(allocation, None, 1, explicit={DOKU_FEE: 1})).code == "reversal_exceeds_allocation"
    first = reverse(allocation, None, 31_351, explicit={"citra": 31_351})
    assert rejected(lambda: reverse(allocation, first, 1, explicit={"citra": 1})).code == "reversal_exceeds_allocation"


def test_explicit_amounts_cannot_run_backwards() -> None:
    error = rejected(lambda: reverse(example1(), None, 1_000, explicit={"andi": 1_500, "budi": -500}))
    assert isinstance(error, ReversalWrongDirection) and error.code == "reversal_wrong_direction"


def test_every_problem_is_listed_and_the_first_one_names_the_error() -> None:
    error = rejected(lambda: reverse(example1(), None, 200_000, explicit={"zaki": 1, "andi": 90_000}))
    assert error.code == "refund_exceeds_captured"
    assert [p.code for p in error.problems] == [
        "refund_exceeds_captured",
        "unknown_party",
        "reversal_exceeds_allocation",
        "explicit_amounts_do_not_sum",
    ]


def test_earlier_reversals_that_do_not_fit_the_allocation_are_refused() -> None:
    allocation = example1()
    stranger = Reversal(amount=10, sellers={"zaki": 10}, platform=0, fee=0)
    assert rejected(lambda: reverse(allocation, stranger, 10)).code == "unknown_party"
    lopsided = Reversal(amount=10, sellers={"andi": 9}, platform=0, fee=0)
    assert rejected(lambda: reverse(allocation, lopsided, 10)).code == "explicit_amounts_do_not_sum"
    too_much = Reversal(amount=31_352, sellers={"citra": 31_352}, platform=0, fee=0)
    assert rejected(lambda: reverse(allocation, too_much, 10)).code == "reversal_exceeds_allocation"


def test_a_refund_amount_that_is_not_an_int_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        reverse(example1(), None, 1_000.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reverse(example1(), None, True)  # type: ignore[arg-type]


def test_sum_of_no_reversals_is_zero() -> None:
    assert sum_reversals([]) == Reversal(amount=0, sellers={}, platform=0, fee=0)
