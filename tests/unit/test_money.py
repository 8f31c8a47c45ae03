"""Integer money primitives, checked against exact rational arithmetic (fractions are the oracle)."""

from __future__ import annotations

import ast
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.money import BPS, allocate_largest_remainder, apply_bps_half_up, div_half_up, require_int

FAST = settings(max_examples=300, deadline=None)

amounts = st.integers(min_value=0, max_value=30) | st.integers(min_value=0, max_value=10**12)
rates = st.integers(min_value=0, max_value=BPS)
party_keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
# Small weights and totals make equal remainders (where the tie-break matters) common.
weights_ = st.integers(min_value=0, max_value=12) | st.integers(min_value=0, max_value=10**9)
weight_maps = st.dictionaries(party_keys, weights_, min_size=1, max_size=8).filter(
    lambda weights: sum(weights.values()) > 0
)


def exact_share(total: int, weight: int, weight_sum: int) -> Fraction:
    return Fraction(total * weight, weight_sum)


# --- half up ---------------------------------------------------------------------------------


@FAST
@given(amount=amounts, bps=rates)
def test_bps_half_up_is_the_nearest_rupiah_with_halves_going_up(amount: int, bps: int) -> None:
    exact = Fraction(amount * bps, BPS)
    result = apply_bps_half_up(amount, bps)
    assert abs(result - exact) <= Fraction(1, 2)
    if exact - math.floor(exact) == Fraction(1, 2):
        assert result == math.ceil(exact)


@FAST
@given(
    numerator=st.integers(min_value=-(10**12), max_value=10**12), denominator=st.integers(min_value=1, max_value=10**6)
)
def test_div_half_up_rounds_halves_towards_plus_infinity(numerator: int, denominator: int) -> None:
    assert div_half_up(numerator, denominator) == math.floor(Fraction(numerator, denominator) + Fraction(1, 2))


def test_half_up_examples_from_the_rules() -> None:
    assert apply_bps_half_up(63_999, 500) == 3_200  # 3 199.95
    assert apply_bps_half_up(33_001, 500) == 1_650  # 1 650.05
    assert apply_bps_half_up(187_500, 150) == 2_813  # 2 812.5, an exact half goes up
    assert div_half_up(-5, 2) == -2  # -2.5 goes towards +infinity


# --- largest remainder -----------------------------------------------------------------------


@FAST
@given(total=amounts, weights=weight_maps)
def test_parts_sum_to_the_whole(total: int, weights: dict[str, int]) -> None:
    assert sum(allocate_largest_remainder(total, weights).values()) == total


@FAST
@given(total=amounts, weights=weight_maps)
def test_each_part_is_within_one_rupiah_of_its_exact_share(total: int, weights: dict[str, int]) -> None:
    weight_sum = sum(weights.values())
    for key, part in allocate_largest_remainder(total, weights).items():
        exact = exact_share(total, weights[key], weight_sum)
        assert math.floor(exact) <= part <= math.ceil(exact)


@FAST
@given(total=amounts, weights=weight_maps)
def test_zero_weight_gets_zero_and_exact_shares_are_not_rounded(total: int, weights: dict[str, int]) -> None:
    weight_sum = sum(weights.values())
    parts = allocate_largest_remainder(total, weights)
    for key, weight in weights.items():
        if weight == 0:
            assert parts[key] == 0
        exact = exact_share(total, weight, weight_sum)
        if exact.denominator == 1:
            assert parts[key] == exact


@FAST
@given(total=amounts, weights=weight_maps)
def test_leftover_rupiah_follow_the_written_tie_break(total: int, weights: dict[str, int]) -> None:
    # larger remainder, then larger weight, then smaller key: whoever got the extra rupiah ranks
    # ahead of everyone who did not.
    weight_sum = sum(weights.values())
    parts = allocate_largest_remainder(total, weights)

    def rank(key: str) -> tuple[Fraction, int, str]:
        exact = exact_share(total, weights[key], weight_sum)
        return (-(exact - math.floor(exact)), -weights[key], key)

    lucky = [key for key in weights if parts[key] > math.floor(exact_share(total, weights[key], weight_sum))]
    unlucky = [key for key in weights if key not in lucky]
    for winner in lucky:
        for loser in unlucky:
            assert rank(winner) < rank(loser)


@FAST
@given(total=amounts, weights=weight_maps, data=st.data())
def test_result_does_not_depend_on_the_order_of_the_parties(total: int, weights: dict[str, int], data) -> None:
    shuffled = dict(data.draw(st.permutations(list(weights.items()))))
    assert allocate_largest_remainder(total, shuffled) == allocate_largest_remainder(total, weights)


@FAST
@given(
    total=st.integers(min_value=-(10**9), max_value=10**9),
    weights=st.dictionaries(
        party_keys, st.integers(min_value=-(10**6), max_value=10**6), min_size=1, max_size=6
    ).filter(lambda weights: sum(weights.values()) > 0),
)
def test_signed_weights_still_sum_exactly_and_stay_within_one_rupiah(total: int, weights: dict[str, int]) -> None:
    weight_sum = sum(weights.values())
    parts = allocate_largest_remainder(total, weights)
    assert sum(parts.values()) == total
    for key, part in parts.items():
        exact = exact_share(total, weights[key], weight_sum)
        assert math.floor(exact) <= part <= math.ceil(exact)


def test_tie_break_examples_from_the_rules() -> None:
    # 100 over three equal weights: equal remainders and weights, so the smallest key wins.
    assert allocate_largest_remainder(100, {"citra": 1, "andi": 1, "budi": 1}) == {"citra": 33, "andi": 34, "budi": 33}
    # 2 over weights 1 and 3: exact shares 0.5 and 1.5, equal remainders, so the larger weight wins.
    assert allocate_largest_remainder(2, {"a": 1, "b": 3}) == {"a": 0, "b": 2}
    # Fixed fee 2 500 pro rata to subtotals: 1 206.67 / 853.32 / 440.01.
    assert allocate_largest_remainder(2_500, {"andi": 90_500, "budi": 63_999, "citra": 33_001}) == {
        "andi": 1_207,
        "budi": 853,
        "citra": 440,
    }


def test_all_zero_weights_split_only_a_zero_total() -> None:
    assert allocate_largest_remainder(0, {"a": 0, "b": 0}) == {"a": 0, "b": 0}
    assert allocate_largest_remainder(0, {}) == {}
    with pytest.raises(ValueError):
        allocate_largest_remainder(1, {"a": 0})
    with pytest.raises(ValueError):
        allocate_largest_remainder(5, {"a": 2, "b": -2})


@pytest.mark.parametrize("bad", [1.0, True, Decimal("1"), Fraction(1), "1", None])
def test_non_integers_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        require_int(bad)
    with pytest.raises(TypeError):
        apply_bps_half_up(bad, 500)
    with pytest.raises(TypeError):
        apply_bps_half_up(1_000, bad)
    with pytest.raises(TypeError):
        div_half_up(bad, 3)
    with pytest.raises(TypeError):
        allocate_largest_remainder(bad, {"a": 1})
    with pytest.raises(TypeError):
        allocate_largest_remainder(10, {"a": bad, "b": 1})


@pytest.mark.parametrize("module", ["ledger/money.py", "ledger/split.py"])
def test_the_money_code_has_no_floats_no_true_division_and_no_io(module: str) -> None:
    tree = ast.parse((Path(__file__).resolve().parents[2] / module).read_text())
    for node in ast.walk(tree):
        assert not (isinstance(node, ast.Constant) and isinstance(node.value, float)), node.lineno
        assert not isinstance(node, ast.Div), node.lineno  # `/` makes floats; `//` does not
        assert not (isinstance(node, ast.Name) and node.id in {"float", "open", "print"}), node.lineno
        assert not isinstance(node, (ast.Await, ast.AsyncFunctionDef)), node.lineno
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "collections.abc", "typing", "msgspec", "ledger.errors", "ledger.money"}
