"""Allocating a Jenius order: who gets which rupiah, frozen at capture.

Properties run against exact rational arithmetic (fractions are the oracle); the examples are
written in the marketplace's words. The strategies here are shared with the reversal and DOKU tests.
"""

from __future__ import annotations

import doctest
import math
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger.money import BPS, apply_bps_half_up
from ledger.split import (
    BASES,
    FEE_BEARERS,
    PLATFORM,
    Allocation,
    CartPolicy,
    ExplicitPolicy,
    FeePolicy,
    LineItem,
    Share,
    SplitInvalid,
    SplitPolicy,
    allocate,
    validate,
)

FAST = settings(max_examples=200, deadline=None)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "split-rules.md"
SELLERS = ("andi", "budi", "citra", "dewi", "eko")


class Order(NamedTuple):
    gross: int
    items: list[LineItem]
    policy: SplitPolicy
    fee_policy: FeePolicy
    basis: str

    def validate(self):
        return validate(self.gross, self.items, self.policy, self.fee_policy, basis=self.basis)

    def allocate(self) -> Allocation:
        return allocate(self.gross, self.items, self.policy, self.fee_policy, basis=self.basis)


# Small numbers make exact halves and equal remainders common; large ones cover real orders.
prices = st.integers(min_value=1, max_value=60) | st.integers(min_value=1, max_value=10**7)
rates = st.integers(min_value=0, max_value=2_000) | st.integers(min_value=0, max_value=BPS)


@st.composite
def fee_policies(draw, gross: int) -> FeePolicy:
    return FeePolicy(
        bps=draw(st.integers(min_value=0, max_value=500) | st.integers(min_value=0, max_value=BPS // 2)),
        fixed=draw(st.integers(min_value=0, max_value=max(0, gross // 4))),
        bearer=draw(st.sampled_from(FEE_BEARERS)),
    )


@st.composite
def cart_orders(draw) -> Order:
    items = [
        LineItem(
            name=f"item {index}",
            price=draw(prices),
            quantity=draw(st.integers(min_value=1, max_value=5)),
            seller_id=draw(st.sampled_from(SELLERS)),
        )
        for index in range(draw(st.integers(min_value=1, max_value=8)))
    ]
    gross = sum(item.price * item.quantity for item in items)
    policy = CartPolicy(
        commission_bps=draw(rates),
        seller_commission_bps=draw(st.dictionaries(st.sampled_from(SELLERS), rates, max_size=3)),
        order_commission_bps=draw(st.none() | rates),
        fixed_fee=draw(st.just(0) | st.integers(min_value=0, max_value=gross // 4)),
    )
    return Order(gross, items, policy, draw(fee_policies(gross)), draw(st.sampled_from(BASES)))


@st.composite
def explicit_orders(draw) -> Order:
    gross = draw(prices | st.integers(min_value=10_000, max_value=100_000_000))
    fee_policy = draw(fee_policies(gross))
    basis = draw(st.sampled_from(BASES))
    base = gross - fee_policy.fee_for(gross) if basis == "net" else gross
    parties = draw(st.lists(st.sampled_from((*SELLERS, PLATFORM)), unique=True, max_size=5))
    shares = []
    bps_left, fixed_left = BPS, base
    for party in parties:
        if draw(st.booleans()):
            bps = draw(st.integers(min_value=0, max_value=bps_left))
            bps_left -= bps
            shares.append(Share(party=party, bps=bps))
        else:
            fixed = draw(st.integers(min_value=0, max_value=max(0, fixed_left)))
            fixed_left -= fixed
            shares.append(Share(party=party, fixed=fixed))
    policy = ExplicitPolicy(shares=tuple(shares), remainder_to=draw(st.sampled_from((*SELLERS, PLATFORM))))
    items = draw(st.sampled_from([[], [LineItem(name="order", price=gross, quantity=1)]]))
    return Order(gross, items, policy, fee_policy, basis)


orders = cart_orders() | explicit_orders()


@st.composite
def allocations(draw) -> Allocation:
    """Valid allocations of every policy, basis and fee bearer."""
    order = draw(orders)
    assume(not order.validate())
    return order.allocate()


def exact(amount: int, numerator: int, denominator: int) -> Fraction:
    return Fraction(amount * numerator, denominator)


def within_one(part: int, share: Fraction) -> bool:
    return math.floor(share) <= part <= math.ceil(share)


# --- properties ------------------------------------------------------------------------------


@FAST
@given(order=orders)
def test_parts_sum_to_the_gross_for_every_policy(order: Order) -> None:
    problems = order.validate()
    if problems:
        # The only invalid orders the generators make: deductions beyond a seller's share, fixed
        # shares beyond the net, a fee for sellers who have no share.
        assert {p.code for p in problems} <= {
            "seller_net_negative",
            "shares_exceed_amount",
            "fixed_shares_exceed_amount",
            "no_seller_to_bear_fee",
        }
        with pytest.raises(SplitInvalid):
            order.allocate()
        return
    allocation = order.allocate()
    assert sum(s.net for s in allocation.sellers) + allocation.platform + allocation.fee == order.gross
    assert sum(allocation.parts().values()) == order.gross
    assert allocation.net == order.gross - allocation.fee
    assert allocation.fee == apply_bps_half_up(order.gross, order.fee_policy.bps) + order.fee_policy.fixed
    assert [s.seller_id for s in allocation.sellers] == sorted(s.seller_id for s in allocation.sellers)
    for part in allocation.sellers:
        assert part.net == part.subtotal - part.commission - part.fee_share
        assert part.net >= 0


@FAST
@given(order=cart_orders())
def test_cart_commission_rounds_half_up_per_seller_and_the_seller_keeps_the_exact_rest(order: Order) -> None:
    assume(not order.validate())
    allocation = order.allocate()
    gross, policy = order.gross, order.policy
    subtotals: dict[str, int] = {}
    for item in order.items:
        subtotals[item.seller_id] = subtotals.get(item.seller_id, 0) + item.price * item.quantity
    assert {s.seller_id: s.subtotal for s in allocation.sellers} == subtotals
    net_amount = gross - allocation.fee
    for part in allocation.sellers:
        fixed_fee_share = exact(policy.fixed_fee, part.subtotal, gross)
        fee_share = exact(allocation.fee, part.subtotal, gross)
        # The base the commission is taken on: the items, or on basis "net" their part of the net.
        base = part.subtotal - part.fee_share if order.basis == "net" else part.subtotal
        if order.basis == "net":
            assert within_one(base, exact(net_amount, part.subtotal, gross))
        rate = policy.rate_for(part.seller_id)
        rate_commission = exact(base, rate, BPS)
        commission_by_rate = apply_bps_half_up(base, rate)
        assert abs(commission_by_rate - rate_commission) <= Fraction(1, 2)
        if rate_commission - math.floor(rate_commission) == Fraction(1, 2):
            assert commission_by_rate == math.ceil(rate_commission)
        assert within_one(part.commission - commission_by_rate, fixed_fee_share)
        if allocation.fee_bearer == "platform":
            assert part.fee_share == 0
        else:
            assert within_one(part.fee_share, fee_share)
    fee_by_platform = allocation.fee if allocation.fee_bearer == "platform" else 0
    assert allocation.platform == sum(s.commission for s in allocation.sellers) - fee_by_platform
    assert allocation.fee_bearer == ("pro_rata" if order.basis == "net" else order.fee_policy.bearer)


@FAST
@given(order=explicit_orders())
def test_explicit_shares_are_within_one_rupiah_of_their_exact_share(order: Order) -> None:
    assume(not order.validate())
    allocation = order.allocate()
    policy = order.policy
    base = allocation.net if order.basis == "net" else order.gross
    before_fee = {s.seller_id: s.subtotal for s in allocation.sellers}
    if order.basis == "net":  # on basis "net" each party's share of the net is its net
        before_fee = {s.seller_id: s.net for s in allocation.sellers}
    platform_share = allocation.platform + (allocation.fee if allocation.fee_bearer == "platform" else 0)
    shares = {**before_fee, PLATFORM: platform_share}
    named = {share.party for share in policy.shares} | {policy.remainder_to}
    assert set(before_fee) == named - {PLATFORM}
    exact_shares = {party: Fraction(0) for party in named | {PLATFORM}}
    for share in policy.shares:
        exact_shares[share.party] += share.fixed if share.fixed is not None else exact(base, share.bps, BPS)
    exact_shares[policy.remainder_to] += base - sum(exact_shares.values())
    for party, value in shares.items():
        assert within_one(value, exact_shares[party]), party
        if exact_shares[party] == 0:
            assert value == 0  # zero weight gets zero
    for part in allocation.sellers:
        assert part.commission == 0


@FAST
@given(order=orders)
def test_allocation_survives_a_round_trip_through_json(order: Order) -> None:
    assume(not order.validate())
    allocation = order.allocate()
    assert msgspec.json.decode(msgspec.json.encode(allocation), type=Allocation) == allocation
    assert msgspec.json.decode(msgspec.json.encode(order.policy), type=SplitPolicy) == order.policy


# --- examples in the marketplace's words -----------------------------------------------------


def three_seller_cart() -> list[LineItem]:
    return [
        LineItem(name="Batik tulis", price=45_250, quantity=2, seller_id="andi"),
        LineItem(name="Kopi Gayo 250 g", price=21_333, quantity=3, seller_id="budi"),
        LineItem(name="Sambal roa", price=33_001, quantity=1, seller_id="citra"),
    ]


def test_three_seller_cart_with_five_percent_commission_and_the_fee_borne_by_the_platform() -> None:
    allocation = allocate(187_500, three_seller_cart(), CartPolicy(commission_bps=500), FeePolicy(bps=150))
    assert allocation.fee == 2_813  # 1.5 % of 187 500 is 2 812.5, half up
    assert [(s.seller_id, s.subtotal, s.commission, s.net) for s in allocation.sellers] == [
        ("andi", 90_500, 4_525, 85_975),
        ("budi", 63_999, 3_200, 60_799),  # 3 199.95 rounds up
        ("citra", 33_001, 1_650, 31_351),  # 1 650.05 rounds down
    ]
    assert allocation.platform == 9_375 - 2_813
    assert allocation.parts() == {"platform": 6_562, "doku_fee": 2_813, "andi": 85_975, "budi": 60_799, "citra": 31_351}


def test_the_order_rate_beats_the_seller_rate_which_beats_the_platform_default() -> None:
    items = three_seller_cart()
    by_seller = CartPolicy(commission_bps=500, seller_commission_bps={"citra": 300})
    commissions = {s.seller_id: s.commission for s in allocate(187_500, items, by_seller, FeePolicy()).sellers}
    assert commissions == {"andi": 4_525, "budi": 3_200, "citra": 990}  # 3 % of 33 001 = 990.03
    by_order = CartPolicy(commission_bps=500, seller_commission_bps={"citra": 300}, order_commission_bps=0)
    assert all(s.commission == 0 for s in allocate(187_500, items, by_order, FeePolicy()).sellers)


def test_the_fixed_order_fee_is_taken_from_sellers_pro_rata_to_their_items() -> None:
    allocation = allocate(187_500, three_seller_cart(), CartPolicy(commission_bps=0, fixed_fee=2_500), FeePolicy())
    # 1 206.67 / 853.32 / 440.01: one rupiah left over goes to the largest remainder (andi).
    assert {s.seller_id: s.commission for s in allocation.sellers} == {"andi": 1_207, "budi": 853, "citra": 440}
    assert allocation.platform == 2_500


def test_who_bears_the_fee_can_be_chosen_per_order() -> None:
    items, policy = three_seller_cart(), CartPolicy(commission_bps=500)
    by_platform = allocate(187_500, items, policy, FeePolicy(bps=150, bearer="platform"))
    by_sellers = allocate(187_500, items, policy, FeePolicy(bps=150, bearer="sellers"))
    assert by_platform.platform == 6_562 and by_sellers.platform == 9_375
    # 2 813 pro rata: 1 357.74 / 960.16 / 495.10, the leftover rupiah to andi.
    assert {s.seller_id: s.fee_share for s in by_sellers.sellers} == {"andi": 1_358, "budi": 960, "citra": 495}
    assert {s.seller_id: s.net for s in by_sellers.sellers} == {"andi": 84_617, "budi": 59_839, "citra": 30_856}


def test_on_the_net_basis_the_fee_comes_off_the_top_and_commission_is_taken_on_what_is_left() -> None:
    allocation = allocate(187_500, three_seller_cart(), CartPolicy(commission_bps=500), FeePolicy(bps=150), basis="net")
    assert allocation.net == 184_687
    assert allocation.fee_bearer == "pro_rata"
    # 184 687 pro rata: 89 142.26 / 63 038.84 / 32 505.90 -> floors leave 2 rupiah: citra, budi.
    bases = {s.seller_id: s.subtotal - s.fee_share for s in allocation.sellers}
    assert bases == {"andi": 89_142, "budi": 63_039, "citra": 32_506}
    assert {s.seller_id: s.commission for s in allocation.sellers} == {"andi": 4_457, "budi": 3_152, "citra": 1_625}
    assert allocation.platform == 4_457 + 3_152 + 1_625


def test_explicit_recipients_mix_percentages_and_fixed_rupiah_with_the_rest_to_the_platform() -> None:
    policy = ExplicitPolicy(
        shares=(Share(party="andi", bps=1_250), Share(party="budi", fixed=30_000), Share(party="citra", bps=3_333))
    )
    allocation = allocate(99_999, [], policy, FeePolicy(bps=150))
    # exact: andi 12 499.875, citra 33 329.667, platform 24 169.458 -> 2 rupiah left: andi, citra.
    assert {s.seller_id: s.net for s in allocation.sellers} == {"andi": 12_500, "budi": 30_000, "citra": 33_330}
    assert allocation.fee == 1_500  # 1 499.985
    assert allocation.platform == 24_169 - 1_500


def test_the_remainder_can_go_to_a_seller_and_the_platform_can_take_a_share() -> None:
    policy = ExplicitPolicy(shares=(Share(party=PLATFORM, bps=1_000),), remainder_to="andi")
    allocation = allocate(
        50_000, [LineItem(name="Paket", price=50_000, quantity=1)], policy, FeePolicy(fixed=1_000, bearer="sellers")
    )
    assert allocation.parts() == {"platform": 5_000, "doku_fee": 1_000, "andi": 44_000}


# --- validation ------------------------------------------------------------------------------


def codes(problems) -> list[str]:
    return sorted(p.code for p in problems)


def test_validation_returns_every_problem_at_once() -> None:
    items = [
        LineItem(name="Batik", price=0, quantity=1, seller_id="andi"),
        LineItem(name="Kopi", price=1_000, quantity=0, seller_id="zaki"),
        LineItem(name="Ongkir", price=1_000, quantity=1),
    ]
    policy = CartPolicy(commission_bps=-1, seller_commission_bps={"andi": 12_000}, fixed_fee=-5)
    problems = validate(5_000, items, policy, FeePolicy(bps=10_001, fixed=-1), known_sellers=frozenset({"andi"}))
    assert codes(problems) == sorted(
        [
            "non_positive_amount",  # items[0].price
            "non_positive_quantity",  # items[1].quantity
            "unknown_party",  # zaki
            "item_without_seller",  # Ongkir
            "items_do_not_sum",  # 0 + 0 + 1 000 != 5 000
            "percent_over_100",  # fee 10 001 bps
            "negative_amount",  # fee fixed
            "negative_rate",  # commission
            "percent_over_100",  # andi's 12 000 bps
            "negative_amount",  # fixed fee
        ]
    )
    with pytest.raises(SplitInvalid) as raised:
        allocate(5_000, items, policy, FeePolicy(bps=10_001, fixed=-1), known_sellers=frozenset({"andi"}))
    assert raised.value.code == "split_invalid"
    assert raised.value.problems == problems


def test_explicit_validation_returns_every_problem_at_once() -> None:
    policy = ExplicitPolicy(
        shares=(
            Share(party="andi", bps=6_000),
            Share(party="andi", fixed=100),
            Share(party="budi", bps=5_000),
            Share(party="citra", fixed=2_000),
            Share(party="doku_fee", bps=1, fixed=1),
        ),
        remainder_to="",
    )
    problems = validate(1_000, [LineItem(name="x", price=999, quantity=1)], policy, FeePolicy(bearer="both"))
    assert codes(problems) == sorted(
        [
            "items_do_not_sum",
            "invalid_bearer",
            "duplicate_party",
            "invalid_party",  # doku_fee is reserved
            "invalid_share",  # both bps and fixed
            "invalid_party",  # empty remainder_to
            "percent_over_100",  # 11 000 bps
            "fixed_shares_exceed_amount",  # 2 100 > 1 000
        ]
    )


@pytest.mark.parametrize(
    ("gross", "items", "policy", "fee_policy", "basis", "code"),
    [
        (0, [], ExplicitPolicy(shares=()), FeePolicy(), "gross", "non_positive_amount"),
        (
            100,
            [LineItem(name="x", price=50, quantity=1, seller_id="a")],
            CartPolicy(commission_bps=0),
            FeePolicy(),
            "gross",
            "items_do_not_sum",
        ),
        (
            100,
            [],
            ExplicitPolicy(shares=(Share(party="a", fixed=101),)),
            FeePolicy(),
            "gross",
            "fixed_shares_exceed_amount",
        ),
        (
            100,
            [],
            ExplicitPolicy(shares=(Share(party="a", fixed=60), Share(party="b", bps=5_000))),
            FeePolicy(),
            "gross",
            "shares_exceed_amount",
        ),
        (
            100,
            [],
            ExplicitPolicy(shares=(Share(party="a", fixed=95),)),
            FeePolicy(fixed=10),
            "net",
            "fixed_shares_exceed_amount",
        ),
        (100, [], ExplicitPolicy(shares=(Share(party="a", bps=10_001),)), FeePolicy(), "gross", "percent_over_100"),
        (100, [], ExplicitPolicy(shares=(Share(party="a", bps=-1),)), FeePolicy(), "gross", "negative_rate"),
        (100, [], ExplicitPolicy(shares=(Share(party="a"),)), FeePolicy(), "gross", "invalid_share"),
        (100, [], ExplicitPolicy(shares=(), remainder_to="zaki"), FeePolicy(), "gross", "unknown_party"),
        (100, [], ExplicitPolicy(shares=()), FeePolicy(fixed=101), "gross", "fee_exceeds_amount"),
        (100, [], ExplicitPolicy(shares=()), FeePolicy(fixed=1, bearer="sellers"), "gross", "no_seller_to_bear_fee"),
        (
            100,
            [],
            ExplicitPolicy(shares=(Share(party="a", fixed=1),)),
            FeePolicy(fixed=2, bearer="sellers"),
            "gross",
            "seller_net_negative",
        ),
        (100, [], ExplicitPolicy(shares=()), FeePolicy(), "both", "invalid_basis"),
        (100, [], CartPolicy(commission_bps=0, fixed_fee=101), FeePolicy(), "gross", "fixed_fee_exceeds_amount"),
        (
            100,
            [LineItem(name="x", price=100, quantity=1, seller_id="a")],
            CartPolicy(commission_bps=9_000, fixed_fee=20),
            FeePolicy(),
            "gross",
            "seller_net_negative",
        ),
        (
            100,
            [LineItem(name="x", price=100, quantity=1, seller_id=PLATFORM)],
            CartPolicy(commission_bps=0),
            FeePolicy(),
            "gross",
            "invalid_party",
        ),
        (100.0, [], ExplicitPolicy(shares=()), FeePolicy(), "gross", "not_an_integer"),
        (100, [], CartPolicy(commission_bps=True), FeePolicy(), "gross", "not_an_integer"),
        (100, [], "cart", FeePolicy(), "gross", "invalid_policy"),
    ],
)
def test_each_problem_has_its_stable_code(gross, items, policy, fee_policy, basis, code) -> None:
    problems = validate(gross, items, policy, fee_policy, known_sellers=frozenset({"a", "b"}), basis=basis)
    assert code in codes(problems)
    with pytest.raises(SplitInvalid) as raised:
        allocate(gross, items, policy, fee_policy, known_sellers=frozenset({"a", "b"}), basis=basis)
    assert code in codes(raised.value.problems)


def test_a_valid_order_has_no_problems() -> None:
    assert validate(187_500, three_seller_cart(), CartPolicy(commission_bps=500), FeePolicy(bps=150)) == ()


def test_allocation_is_frozen() -> None:
    allocation = allocate(187_500, three_seller_cart(), CartPolicy(commission_bps=500), FeePolicy(bps=150))
    with pytest.raises(AttributeError):
        allocation.platform = 0  # type: ignore[misc]


# --- the rules document ----------------------------------------------------------------------


def test_the_worked_examples_in_the_rules_document_hold() -> None:
    result = doctest.testfile(str(DOCS), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10
    assert result.failed == 0
