"""Split settlement: who gets which rupiah of a Jenius order, and how a refund gives them back.

Rule: pure integer arithmetic over frozen Structs (no I/O, no clock, no floats). An allocation
sums exactly to the gross; a reversal sums exactly to the refund; the proportional reversals of
any chain of partial refunds add up to the full reversal; nobody is reversed beyond their refund
budget; a DOKU split instruction sums exactly to the net. Rules and worked examples:
docs/split-rules.md.

    allocate(gross, items, policy, fee_policy)      -> Allocation   (frozen at capture)
    reverse(allocation, already, amount, policy)    -> Reversal     (one per refund)
    line_item_parts(allocation, items, before, refunded, policy) -> explicit amounts of a refund
                                                       of whole line items (then ``reverse``)
    build_settlement_instruction(allocation, ...)   -> DOKU additional_info.settlement

Errors (all ``LedgerError``; ``problems`` lists every problem found, each with a stable code)::

    SplitError
    ├── SplitInvalid                 split_invalid                (from allocate; see validate)
    ├── ReversalRejected             (from reverse; the class is that of the first problem)
    │   ├── ReversalNotPositive          non_positive_amount
    │   ├── ReversalExceedsCaptured      refund_exceeds_captured
    │   ├── ReversalUnknownParty         unknown_party
    │   ├── ReversalDoesNotSum           explicit_amounts_do_not_sum, already_does_not_sum
    │   ├── ReversalExceedsAllocation    reversal_exceeds_allocation
    │   └── ReversalWrongDirection       reversal_wrong_direction
    └── SettlementInstructionInvalid platform_remainder_negative, missing_platform_account
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, TypeGuard

import msgspec

from ledger.errors import LedgerError
from ledger.money import BPS, allocate_largest_remainder, apply_bps_half_up, require_int

PLATFORM = "platform"  # party key of the platform
DOKU_FEE = "doku_fee"  # party key of DOKU's fee in parts()
RESERVED_PARTIES = frozenset({PLATFORM, DOKU_FEE})  # never a seller id

Basis = Literal["gross", "net"]
BASES = ("gross", "net")
FEE_BEARERS = ("platform", "sellers")


# --- inputs ---------------------------------------------------------------------------------


class LineItem(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    price: int
    quantity: int
    seller_id: str | None = None


class CartPolicy(msgspec.Struct, frozen=True, kw_only=True, tag="cart"):
    """Every item belongs to a seller; the platform takes a commission from each seller.

    Rate precedence: ``order_commission_bps`` > ``seller_commission_bps[seller]`` > ``commission_bps``.
    ``fixed_fee`` is a per-order platform fee taken from the sellers pro rata to their item
    subtotals (largest remainder); it is counted in each seller's ``commission``.
    """

    commission_bps: int
    seller_commission_bps: dict[str, int] = {}
    order_commission_bps: int | None = None
    fixed_fee: int = 0

    def rate_for(self, seller_id: str) -> int:
        if self.order_commission_bps is not None:
            return self.order_commission_bps
        return self.seller_commission_bps.get(seller_id, self.commission_bps)


class Share(msgspec.Struct, frozen=True, kw_only=True):
    """A share of the base for one party: exactly one of ``bps`` (of the base) or ``fixed`` (rupiah)."""

    party: str
    bps: int | None = None
    fixed: int | None = None


class ExplicitPolicy(msgspec.Struct, frozen=True, kw_only=True, tag="explicit"):
    """Named shares, percentages and fixed amounts mixed freely; the rest goes to ``remainder_to``.

    A party may appear once in ``shares`` and also be ``remainder_to`` (it then gets both).
    ``PLATFORM`` may hold a share too.
    """

    shares: tuple[Share, ...]
    remainder_to: str = PLATFORM


SplitPolicy = CartPolicy | ExplicitPolicy


class FeePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """DOKU's fee (MDR): ``bps`` of the gross, rounded half up, plus ``fixed`` rupiah.

    ``bearer`` decides who pays it on basis "gross"; "chosen per order" means the caller passes
    a different ``FeePolicy`` for that order. On basis "net" the fee comes off the top before the
    split, as DOKU does, so every party bears it pro rata and ``bearer`` is not used.
    """

    bps: int = 0
    fixed: int = 0
    bearer: Literal["platform", "sellers"] = "platform"

    def fee_for(self, gross: int) -> int:
        return apply_bps_half_up(gross, self.bps) + self.fixed


# --- the frozen allocation ------------------------------------------------------------------


class SellerPart(msgspec.Struct, frozen=True, kw_only=True):
    """One seller's part; always ``net == subtotal - commission - fee_share``.

    ``subtotal`` is the seller's share before commission and fee (its items in a cart; its share
    of the gross-equivalent in an explicit split); ``commission`` includes its part of the
    cart's fixed fee (always 0 in an explicit split); ``fee_share`` is the part of DOKU's fee on
    this seller's line.
    """

    seller_id: str
    subtotal: int
    commission: int
    fee_share: int
    net: int


class Allocation(msgspec.Struct, frozen=True, kw_only=True):
    """Who gets what of one order; ``sum(s.net) + platform + fee == gross``.

    ``platform`` is the platform's net share (commission and fixed fee minus any fee it bears);
    it is negative when the fee it bears exceeds what it earns. ``fee_bearer`` is "platform",
    "sellers" or, on basis "net", "pro_rata".
    """

    gross: int
    fee: int
    basis: Basis
    fee_bearer: str
    sellers: tuple[SellerPart, ...]  # sorted by seller_id
    platform: int

    @property
    def net(self) -> int:
        """What DOKU settles: the gross minus DOKU's fee."""
        return self.gross - self.fee

    def parts(self) -> dict[str, int]:
        """``{"platform": …, "doku_fee": …, seller_id: net, …}``; sums to ``gross``."""
        return {PLATFORM: self.platform, DOKU_FEE: self.fee, **{s.seller_id: s.net for s in self.sellers}}


class SplitProblem(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    detail: str
    field: str | None = None


# --- errors ---------------------------------------------------------------------------------


class SplitError(LedgerError):
    code = "split_error"

    def __init__(self, problems: Sequence[SplitProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p.code}: {p.detail}" for p in self.problems))


class SplitInvalid(SplitError):
    code = "split_invalid"


class ReversalRejected(SplitError):
    code = "reversal_rejected"


class ReversalNotPositive(ReversalRejected):
    code = "non_positive_amount"


class ReversalExceedsCaptured(ReversalRejected):
    code = "refund_exceeds_captured"


class ReversalUnknownParty(ReversalRejected):
    code = "unknown_party"


class ReversalDoesNotSum(ReversalRejected):
    code = "explicit_amounts_do_not_sum"


class ReversalExceedsAllocation(ReversalRejected):
    code = "reversal_exceeds_allocation"


class ReversalWrongDirection(ReversalRejected):
    code = "reversal_wrong_direction"


class SettlementInstructionInvalid(SplitError):
    code = "settlement_instruction_invalid"


_REVERSAL_ERRORS: dict[str, type[ReversalRejected]] = {
    "non_positive_amount": ReversalNotPositive,
    "refund_exceeds_captured": ReversalExceedsCaptured,
    "unknown_party": ReversalUnknownParty,
    "explicit_amounts_do_not_sum": ReversalDoesNotSum,
    "already_does_not_sum": ReversalDoesNotSum,
    "reversal_exceeds_allocation": ReversalExceedsAllocation,
    "reversal_wrong_direction": ReversalWrongDirection,
}


# --- validation -----------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[SplitProblem] = []

    def add(self, code: str, detail: str, field: str | None = None) -> None:
        self.items.append(SplitProblem(code=code, detail=detail, field=field))

    def is_int(self, value: object, field: str) -> TypeGuard[int]:
        if type(value) is int:
            return True
        self.add("not_an_integer", f"{field} must be an int, got {type(value).__name__}", field)
        return False

    def rate(self, value: object, field: str) -> bool:
        if not self.is_int(value, field):
            return False
        if value < 0:
            self.add("negative_rate", f"{field} is {value} bps", field)
            return False
        if value > BPS:
            self.add("percent_over_100", f"{field} is {value} bps, above {BPS}", field)
            return False
        return True

    def non_negative(self, value: object, field: str) -> bool:
        if not self.is_int(value, field):
            return False
        if value < 0:
            self.add("negative_amount", f"{field} is {value}", field)
            return False
        return True

    def party(self, party: object, field: str, known: frozenset[str] | None, platform_ok: bool) -> bool:
        if not isinstance(party, str) or not party:
            self.add("invalid_party", "a party must be a non-empty string", field)
            return False
        if party in RESERVED_PARTIES and not (party == PLATFORM and platform_ok):
            self.add("invalid_party", f"{party!r} is reserved", field)
            return False
        if party != PLATFORM and known is not None and party not in known:
            self.add("unknown_party", f"{party!r} is not a known seller", field)
            return False
        return True


def validate(
    gross: int,
    items: Sequence[LineItem],
    policy: SplitPolicy,
    fee_policy: FeePolicy,
    known_sellers: frozenset[str] | None = None,
    basis: Basis = "gross",
) -> tuple[SplitProblem, ...]:
    """Every problem with this order's split, at once; empty when ``allocate`` will succeed.

    Codes: not_an_integer, non_positive_amount, non_positive_quantity, items_do_not_sum,
    item_without_seller, invalid_party, unknown_party, duplicate_party, invalid_share,
    negative_rate, percent_over_100, negative_amount, fee_exceeds_amount,
    fixed_fee_exceeds_amount, fixed_shares_exceed_amount, shares_exceed_amount,
    no_seller_to_bear_fee, seller_net_negative, invalid_basis, invalid_bearer, invalid_policy.
    """
    problems = _check_inputs(gross, items, policy, fee_policy, known_sellers, basis)
    if problems:
        return problems
    return _check_result(_compute(gross, items, policy, fee_policy, basis), policy)


def allocate(
    gross: int,
    items: Sequence[LineItem],
    policy: SplitPolicy,
    fee_policy: FeePolicy,
    known_sellers: frozenset[str] | None = None,
    basis: Basis = "gross",
) -> Allocation:
    """The frozen allocation of one order; raises ``SplitInvalid`` listing every problem."""
    problems = _check_inputs(gross, items, policy, fee_policy, known_sellers, basis)
    if problems:
        raise SplitInvalid(problems)
    allocation = _compute(gross, items, policy, fee_policy, basis)
    problems = _check_result(allocation, policy)
    if problems:
        raise SplitInvalid(problems)
    return allocation


def _check_inputs(
    gross: int,
    items: Sequence[LineItem],
    policy: SplitPolicy,
    fee_policy: FeePolicy,
    known: frozenset[str] | None,
    basis: Basis,
) -> tuple[SplitProblem, ...]:
    """Problems visible without computing the split; later checks skip what an earlier one refused."""
    p = _Problems()
    gross_ok = p.is_int(gross, "gross")
    if gross_ok and gross <= 0:
        p.add("non_positive_amount", f"gross is {gross}", "gross")
        gross_ok = False
    if basis not in BASES:
        p.add("invalid_basis", f"basis must be one of {BASES}", "basis")
    items_total = _check_items(p, items, isinstance(policy, CartPolicy), known)
    must_sum = isinstance(policy, CartPolicy) or len(items) > 0
    if gross_ok and items_total is not None and must_sum and items_total != gross:
        p.add("items_do_not_sum", f"items sum to {items_total}, the amount is {gross}", "items")
    fee = _check_fee(p, fee_policy, gross if gross_ok else None)
    match policy:
        case CartPolicy():
            _check_cart(p, policy, gross if gross_ok else None, known)
        case ExplicitPolicy():
            base = None
            if gross_ok and fee is not None:
                base = gross - fee if basis == "net" else gross
            _check_explicit(p, policy, base, known)
        case _:
            p.add("invalid_policy", "policy must be a CartPolicy or an ExplicitPolicy", "policy")
    return tuple(p.items)


def _check_items(p: _Problems, items: Sequence[LineItem], is_cart: bool, known: frozenset[str] | None) -> int | None:
    """The items' total, or None when it cannot be computed."""
    total: int | None = 0
    for index, item in enumerate(items):
        field = f"items[{index}]"
        price_ok = p.is_int(item.price, f"{field}.price")
        if price_ok and item.price <= 0:
            p.add("non_positive_amount", f"price is {item.price}", f"{field}.price")
        quantity_ok = p.is_int(item.quantity, f"{field}.quantity")
        if quantity_ok and item.quantity <= 0:
            p.add("non_positive_quantity", f"quantity is {item.quantity}", f"{field}.quantity")
        total = total + item.price * item.quantity if price_ok and quantity_ok and total is not None else None
        if item.seller_id is not None:
            p.party(item.seller_id, f"{field}.seller_id", known, platform_ok=False)
        elif is_cart:
            p.add("item_without_seller", f"item {item.name!r} has no seller", f"{field}.seller_id")
    return total


def _check_fee(p: _Problems, fee_policy: FeePolicy, gross: int | None) -> int | None:
    """DOKU's fee, or None when it cannot be computed or is too large."""
    bps_ok = p.rate(fee_policy.bps, "fee_policy.bps")
    fixed_ok = p.non_negative(fee_policy.fixed, "fee_policy.fixed")
    if fee_policy.bearer not in FEE_BEARERS:
        p.add("invalid_bearer", f"bearer must be one of {FEE_BEARERS}", "fee_policy.bearer")
    if gross is None or not (bps_ok and fixed_ok):
        return None
    fee = fee_policy.fee_for(gross)
    if fee > gross:
        p.add("fee_exceeds_amount", f"DOKU's fee {fee} exceeds the amount {gross}", "fee_policy")
        return None
    return fee


def _check_cart(p: _Problems, policy: CartPolicy, gross: int | None, known: frozenset[str] | None) -> None:
    p.rate(policy.commission_bps, "policy.commission_bps")
    for seller_id, bps in policy.seller_commission_bps.items():
        field = f"policy.seller_commission_bps[{seller_id}]"
        p.party(seller_id, field, known, platform_ok=False)
        p.rate(bps, field)
    if policy.order_commission_bps is not None:
        p.rate(policy.order_commission_bps, "policy.order_commission_bps")
    if p.non_negative(policy.fixed_fee, "policy.fixed_fee") and gross is not None and policy.fixed_fee > gross:
        p.add("fixed_fee_exceeds_amount", f"fixed fee {policy.fixed_fee} exceeds {gross}", "policy.fixed_fee")


def _check_explicit(p: _Problems, policy: ExplicitPolicy, base: int | None, known: frozenset[str] | None) -> None:
    seen: set[str] = set()
    fixed_total: int | None = 0
    bps_total: int | None = 0
    for index, share in enumerate(policy.shares):
        field = f"policy.shares[{index}]"
        p.party(share.party, f"{field}.party", known, platform_ok=True)
        if share.party in seen:
            p.add("duplicate_party", f"{share.party!r} has more than one share", f"{field}.party")
        seen.add(share.party)
        if (share.bps is None) == (share.fixed is None):
            p.add("invalid_share", "a share needs exactly one of bps or fixed", field)
        elif share.bps is not None:
            if p.is_int(share.bps, f"{field}.bps") and share.bps < 0:
                p.add("negative_rate", f"share is {share.bps} bps", f"{field}.bps")
            if type(share.bps) is int and bps_total is not None:
                bps_total += share.bps
            else:
                bps_total = None
        else:
            p.non_negative(share.fixed, f"{field}.fixed")
            if type(share.fixed) is int and fixed_total is not None:
                fixed_total += share.fixed
            else:
                fixed_total = None
    p.party(policy.remainder_to, "policy.remainder_to", known, platform_ok=True)
    if bps_total is not None and bps_total > BPS:
        p.add("percent_over_100", f"percentage shares add up to {bps_total} bps", "policy.shares")
    if base is None or fixed_total is None:
        return
    if fixed_total > base:
        p.add("fixed_shares_exceed_amount", f"fixed shares {fixed_total} exceed the base {base}", "policy.shares")
    elif bps_total is not None and bps_total <= BPS and fixed_total * BPS + base * bps_total > base * BPS:
        p.add("shares_exceed_amount", f"fixed and percentage shares exceed the base {base}", "policy.shares")


def _check_result(allocation: Allocation, policy: SplitPolicy) -> tuple[SplitProblem, ...]:
    p = _Problems()
    if (
        isinstance(policy, ExplicitPolicy)
        and allocation.fee_bearer == "sellers"
        and allocation.fee > 0
        and sum(s.subtotal for s in allocation.sellers) == 0
    ):
        p.add("no_seller_to_bear_fee", "the sellers bear the fee but have no share", "fee_policy.bearer")
    for part in allocation.sellers:
        if part.net < 0:
            p.add(
                "seller_net_negative",
                f"commission and fee ({part.commission} + {part.fee_share}) exceed {part.subtotal}",
                f"sellers[{part.seller_id}]",
            )
    return tuple(p.items)


# --- allocation -----------------------------------------------------------------------------


def _compute(
    gross: int, items: Sequence[LineItem], policy: SplitPolicy, fee_policy: FeePolicy, basis: Basis
) -> Allocation:
    match policy:
        case CartPolicy():
            return _allocate_cart(gross, items, policy, fee_policy, basis)
        case ExplicitPolicy():
            return _allocate_explicit(gross, policy, fee_policy, basis)
    raise TypeError("unreachable: policy checked")


def _allocate_cart(
    gross: int, items: Sequence[LineItem], policy: CartPolicy, fee_policy: FeePolicy, basis: Basis
) -> Allocation:
    subtotals: dict[str, int] = {}
    for item in items:
        if item.seller_id is None:  # a cart item without a seller is refused by _check_items
            raise TypeError("unreachable: items checked")
        subtotals[item.seller_id] = subtotals.get(item.seller_id, 0) + item.price * item.quantity
    subtotals = dict(sorted(subtotals.items()))
    fee = fee_policy.fee_for(gross)
    fixed_fee_shares = allocate_largest_remainder(policy.fixed_fee, subtotals)
    if basis == "net":
        # DOKU splits the net: each seller's line first loses its pro rata part of the fee,
        # and the commission is taken on what is left.
        bases = allocate_largest_remainder(gross - fee, subtotals)
        fee_shares = {seller: subtotals[seller] - bases[seller] for seller in subtotals}
        bearer = "pro_rata"
    elif fee_policy.bearer == "sellers":
        bases = subtotals
        fee_shares = allocate_largest_remainder(fee, subtotals)
        bearer = "sellers"
    else:
        bases = subtotals
        fee_shares = dict.fromkeys(subtotals, 0)
        bearer = "platform"
    sellers = []
    for seller, subtotal in subtotals.items():
        commission = apply_bps_half_up(bases[seller], policy.rate_for(seller)) + fixed_fee_shares[seller]
        sellers.append(
            SellerPart(
                seller_id=seller,
                subtotal=subtotal,
                commission=commission,
                fee_share=fee_shares[seller],
                net=subtotal - commission - fee_shares[seller],
            )
        )
    platform = sum(s.commission for s in sellers) - (fee if bearer == "platform" else 0)
    return Allocation(gross=gross, fee=fee, basis=basis, fee_bearer=bearer, sellers=tuple(sellers), platform=platform)


def _allocate_explicit(gross: int, policy: ExplicitPolicy, fee_policy: FeePolicy, basis: Basis) -> Allocation:
    fee = fee_policy.fee_for(gross)
    base = gross - fee if basis == "net" else gross
    fixed = {s.party: s.fixed for s in policy.shares if s.fixed is not None}
    rates = {s.party: s.bps for s in policy.shares if s.bps is not None}
    parties = sorted({s.party for s in policy.shares} | {policy.remainder_to})
    fixed_total = sum(fixed.values())
    rest = base - fixed_total
    # One largest-remainder pass over the percentage parties and the remainder party, so the
    # remainder party competes for leftover rupiah like everyone else. Weights are exact shares
    # scaled by BPS: base * bps for a percentage, the rest for the remainder party.
    weights = {party: base * rates.get(party, 0) for party in parties}
    weights[policy.remainder_to] += BPS * rest - base * sum(rates.values())
    shares = allocate_largest_remainder(rest, weights)
    for party, amount in fixed.items():
        shares[party] += amount

    sellers_keys = [party for party in parties if party != PLATFORM]
    if basis == "net":
        # The fee came off the top: a percentage party bore bps/BPS of it, a fixed party none,
        # the remainder party the rest. Recorded so subtotal is the gross-equivalent share.
        fee_weights = {party: rates.get(party, 0) for party in parties}
        fee_weights[policy.remainder_to] += BPS - sum(rates.values())
        fee_shares = allocate_largest_remainder(fee, fee_weights)
        bearer = "pro_rata"
        subtotals = {party: shares[party] + fee_shares[party] for party in parties}
        platform = shares.get(PLATFORM, 0)
    elif fee_policy.bearer == "sellers":
        seller_shares = {party: shares[party] for party in sellers_keys}
        if sum(seller_shares.values()) > 0:
            fee_shares = allocate_largest_remainder(fee, seller_shares)
        else:  # reported as no_seller_to_bear_fee by _check_result when fee > 0
            fee_shares = dict.fromkeys(sellers_keys, 0)
        bearer = "sellers"
        subtotals = shares
        platform = shares.get(PLATFORM, 0)
    else:
        fee_shares = dict.fromkeys(parties, 0)
        bearer = "platform"
        subtotals = shares
        platform = shares.get(PLATFORM, 0) - fee
    sellers = tuple(
        SellerPart(
            seller_id=party,
            subtotal=subtotals[party],
            commission=0,
            fee_share=fee_shares[party],
            net=subtotals[party] - fee_shares[party],
        )
        for party in sellers_keys
    )
    return Allocation(gross=gross, fee=fee, basis=basis, fee_bearer=bearer, sellers=sellers, platform=platform)


# --- reversal -------------------------------------------------------------------------------


class RefundPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a refund is shared; keep it the same for every refund of one order.

    ``refund_commission``: the platform gives back its cart commission pro rata (default); when
    False it keeps it and the sellers fund it. ``doku_refunds_fee``: DOKU gives its fee back pro
    rata (default False: DOKU keeps it); while DOKU keeps it, ``fee_absorbed_by`` carries the loss
    (the platform, or the sellers pro rata to their subtotals).
    """

    refund_commission: bool = True
    fee_absorbed_by: Literal["platform", "sellers"] = "platform"
    doku_refunds_fee: bool = False


class Reversal(msgspec.Struct, frozen=True, kw_only=True):
    """What one refund (or, summed, several) takes back: ``sum(sellers) + platform + fee == amount``.

    Every seller of the allocation is listed, zeros included. Amounts are >= 0 except
    ``platform`` when its refund budget is negative (see ``reversal_budget``): it then gets money
    back and its reversals are <= 0.
    """

    amount: int
    sellers: dict[str, int]
    platform: int
    fee: int

    def parts(self) -> dict[str, int]:
        return {PLATFORM: self.platform, DOKU_FEE: self.fee, **self.sellers}


def sum_reversals(reversals: Iterable[Reversal]) -> Reversal:
    """The cumulative reversal of earlier refunds (the ``already`` argument of ``reverse``)."""
    amount = platform = fee = 0
    sellers: dict[str, int] = {}
    for reversal in reversals:
        amount += reversal.amount
        platform += reversal.platform
        fee += reversal.fee
        for seller, value in reversal.sellers.items():
            sellers[seller] = sellers.get(seller, 0) + value
    return Reversal(amount=amount, sellers=dict(sorted(sellers.items())), platform=platform, fee=fee)


def reversal_budget(allocation: Allocation, policy: RefundPolicy = RefundPolicy()) -> dict[str, int]:
    """What each party has given back once the whole order is refunded; sums to the gross.

    Budget = allocated part minus what the party still holds after a full refund:
      seller   net  (+ commission if the platform keeps it) (+ its pro rata part of the fee
               if DOKU keeps the fee and the sellers absorb it)                        >= 0
      doku_fee fee if DOKU refunds its fee, else 0                                      >= 0
      platform the rest: platform (- commission kept) (+ fee if it absorbs the kept fee)
               negative when it gets back more than it gave (it bore the fee at capture
               and now DOKU, or the sellers, make it good)
    A party's cumulative reversal always lies between 0 and its budget.
    """
    if policy.fee_absorbed_by not in FEE_BEARERS:
        raise ValueError(f"fee_absorbed_by must be one of {FEE_BEARERS}")
    budget = {s.seller_id: s.net for s in allocation.sellers}
    platform = allocation.platform
    fee = allocation.fee if policy.doku_refunds_fee else 0
    if not policy.refund_commission:
        for part in allocation.sellers:
            budget[part.seller_id] += part.commission
            platform -= part.commission
    if not policy.doku_refunds_fee and allocation.fee:
        subtotals = {s.seller_id: s.subtotal for s in allocation.sellers}
        if policy.fee_absorbed_by == "sellers" and sum(subtotals.values()) > 0:
            for seller, burden in allocate_largest_remainder(allocation.fee, subtotals).items():
                budget[seller] += burden
        else:  # the platform absorbs it, also when there is no seller to absorb it
            platform += allocation.fee
    return {PLATFORM: platform, DOKU_FEE: fee, **budget}


def _room(budget: int, already: int) -> tuple[int, int]:
    """Bounds (low, high) on this refund's reversal for one party: stay between 0 and the budget."""
    if budget >= 0:
        return 0, budget - already
    return budget - already, 0


def _within(budget: int, value: int) -> bool:
    return 0 <= value <= budget if budget >= 0 else budget <= value <= 0


def reverse(
    allocation: Allocation,
    already: Reversal | None,
    amount: int,
    policy: RefundPolicy = RefundPolicy(),
    explicit: Mapping[str, int] | None = None,
) -> Reversal:
    """This refund's reversal; ``already`` is the sum of the order's earlier reversals.

    Proportional (default): the target is the largest-remainder split of everything refunded
    so far (``already.amount + amount``) over ``reversal_budget``; this refund reverses the
    target minus ``already``. So any chain of partial refunds ends exactly at the budget.
    Largest remainder is not monotone in the total (the Alabama paradox), so the give-back rule
    (docs/split-rules.md §3.2): each party's step is its target minus ``already``, held between
    0 and what the party has left (``_room``); if the held steps add up to more than the refund,
    the surplus comes off the steps by largest remainder over each party's step (what it gives
    in this refund beyond its lower bound); if to less, the shortfall is added by largest
    remainder over what each party has left after its step. Later refunds catch up.

    ``explicit``: per-party amounts keyed like ``parts()`` (missing parties reverse 0); they must
    sum to ``amount`` and keep every party between 0 and its budget.

    Raises a ``ReversalRejected`` subclass listing every problem.
    """
    require_int(amount, "amount")
    if sum(allocation.parts().values()) != allocation.gross:
        raise ValueError("the allocation does not balance: it was not made by allocate()")
    budget = reversal_budget(allocation, policy)
    p = _Problems()
    if amount <= 0:
        p.add("non_positive_amount", f"refund amount is {amount}", "amount")
    before = _check_already(p, budget, already)
    before_amount = already.amount if already is not None else 0
    if before_amount + amount > allocation.gross:
        total = before_amount + amount
        p.add("refund_exceeds_captured", f"refunds would total {total}, captured {allocation.gross}", "amount")
    if explicit is not None:
        _check_explicit_reversal(p, budget, before, amount, explicit)
    if p.items:
        raise _REVERSAL_ERRORS[p.items[0].code](p.items)

    if explicit is not None:
        step = {party: explicit.get(party, 0) for party in budget}
    else:
        step = _proportional_step(budget, before, before_amount + amount, amount)
    return Reversal(
        amount=amount,
        sellers={s.seller_id: step[s.seller_id] for s in allocation.sellers},
        platform=step[PLATFORM],
        fee=step[DOKU_FEE],
    )


def _check_already(p: _Problems, budget: dict[str, int], already: Reversal | None) -> dict[str, int]:
    """Each party's cumulative reversal so far, checked against this allocation and policy."""
    before = dict.fromkeys(budget, 0)
    if already is None:
        return before
    for party, value in already.parts().items():
        if party not in budget:
            p.add("unknown_party", f"{party!r} is not in the allocation", "already")
        else:
            before[party] = value
    if sum(already.parts().values()) != already.amount:
        p.add("already_does_not_sum", "earlier reversals do not add up to their amount", "already")
    for party, value in before.items():
        if not _within(budget[party], value):
            p.add(
                "reversal_exceeds_allocation", f"{party!r} was already reversed {value} of {budget[party]}", "already"
            )
    return before


def _check_explicit_reversal(
    p: _Problems, budget: dict[str, int], before: dict[str, int], amount: int, explicit: Mapping[str, int]
) -> None:
    for party, value in explicit.items():
        require_int(value, f"explicit[{party}]")
        field = f"explicit[{party}]"
        if party not in budget:
            p.add("unknown_party", f"{party!r} is not in the allocation", field)
            continue
        low, high = _room(budget[party], before[party])
        gives_back = budget[party] >= 0
        if (value > high) if gives_back else (value < low):
            p.add("reversal_exceeds_allocation", f"{party!r} has {abs(budget[party] - before[party])} left", field)
        elif (value < low) if gives_back else (value > high):
            p.add("reversal_wrong_direction", f"{party!r} cannot be reversed {value}", field)
    if sum(explicit.values()) != amount:
        p.add(
            "explicit_amounts_do_not_sum", f"explicit amounts sum to {sum(explicit.values())}, not {amount}", "explicit"
        )


def _proportional_step(budget: dict[str, int], before: dict[str, int], total: int, amount: int) -> dict[str, int]:
    """The give-back rule (docs/split-rules.md §3.2): held steps, then the surplus off the steps
    or the shortfall onto what is left, each by largest remainder."""
    target = allocate_largest_remainder(total, budget)
    rooms = {party: _room(budget[party], before[party]) for party in budget}
    step = {party: min(max(target[party] - before[party], rooms[party][0]), rooms[party][1]) for party in budget}
    gap = amount - sum(step.values())
    # Feasible by construction: the highs add up to at least `amount` and the lows to at most 0,
    # and largest remainder never gives a party more than its weight when total <= sum(weights).
    if gap > 0:
        extra = allocate_largest_remainder(gap, {party: rooms[party][1] - step[party] for party in budget})
        step = {party: step[party] + extra[party] for party in budget}
    elif gap < 0:
        less = allocate_largest_remainder(-gap, {party: step[party] - rooms[party][0] for party in budget})
        step = {party: step[party] - less[party] for party in budget}
    return step


# --- refunds by line item ------------------------------------------------------------------


def line_budgets(allocation: Allocation, policy: RefundPolicy = RefundPolicy()) -> dict[str, dict[str, int]]:
    """Each seller's line budget: what a full refund of the seller's items takes from whom.

    For seller ``s`` with subtotal ``S``: ``s`` gives back its own budget (``reversal_budget``),
    ``doku_fee`` its part of DOKU's fee budget (the fee shares when the sellers bore the fee, else
    pro rata to the subtotals, by largest remainder), and the platform the rest of ``S`` (its
    commission on those items, less any fee it gets back). Each seller's line budget sums to
    ``S``, and summed over the sellers they are ``reversal_budget`` again.
    """
    budget = reversal_budget(allocation, policy)
    fee_shares = {p.seller_id: p.fee_share for p in allocation.sellers}
    weights = fee_shares if sum(fee_shares.values()) > 0 else {p.seller_id: p.subtotal for p in allocation.sellers}
    doku = allocate_largest_remainder(budget[DOKU_FEE], weights) if sum(weights.values()) > 0 else {}
    lines = {}
    for part in allocation.sellers:
        seller, fee = budget[part.seller_id], doku.get(part.seller_id, 0)
        lines[part.seller_id] = {part.seller_id: seller, PLATFORM: part.subtotal - seller - fee, DOKU_FEE: fee}
    return lines


def line_item_parts(
    allocation: Allocation,
    items: Sequence[LineItem],
    before: Mapping[int, int],
    refunded: Mapping[int, int],
    policy: RefundPolicy = RefundPolicy(),
) -> dict[str, int]:
    """The per-party amounts (``parts()`` keys) of a refund of whole line items of a cart.

    ``items`` are the order's line items; ``before`` and ``refunded`` map an item's index to the
    quantity refunded by earlier line-item refunds and by this one. Per seller, the target is the
    largest-remainder split of the seller's refunded subtotal so far (price x quantity of its
    refunded items) over its line budget (``line_budgets``); this refund takes the target after
    it minus the target before it. So it touches only the sellers whose items come back, a
    seller's refunded items together reverse exactly its line budget, and the amounts sum to
    the refunded items' price. Pass the result to ``reverse(..., explicit=...)``, which holds
    every party to its budget.
    """
    lines = line_budgets(allocation, policy)
    parts: dict[str, int] = dict.fromkeys([PLATFORM, DOKU_FEE, *lines], 0)
    for seller, line in lines.items():
        owned = [i for i, item in enumerate(items) if item.seller_id == seller]
        was = sum(items[i].price * before.get(i, 0) for i in owned)
        now = was + sum(items[i].price * refunded.get(i, 0) for i in owned)
        if now == was:
            continue
        after_, before_ = allocate_largest_remainder(now, line), allocate_largest_remainder(was, line)
        for party in line:
            parts[party] += after_[party] - before_[party]
    return parts


# --- DOKU split instruction -----------------------------------------------------------------


def build_settlement_instruction(
    allocation: Allocation, seller_bank_ids: Mapping[str, str], platform_bank_id: str
) -> list[dict[str, object]]:
    """DOKU's ``additional_info.settlement`` for this allocation, FIX rupiah on the net.

    One entry per seller with a DOKU bank settlement id (its ``net``), in seller order, then the
    platform's account with the remainder (the platform's share plus the nets of sellers with no
    bank id, whose money the platform pays out itself). Zero entries are left out and entries for
    the same account are merged; the values sum exactly to ``allocation.net``. Raises
    ``SettlementInstructionInvalid`` when the platform's remainder would be negative, or positive
    with no platform account.
    """
    values: dict[str, int] = {}
    for part in allocation.sellers:
        bank_id = seller_bank_ids.get(part.seller_id)
        if bank_id and part.net:
            values[bank_id] = values.get(bank_id, 0) + part.net
    remainder = allocation.net - sum(values.values())
    p = _Problems()
    if remainder < 0:
        p.add("platform_remainder_negative", f"the platform's account would get {remainder}", "platform")
    elif remainder > 0 and not platform_bank_id:
        p.add("missing_platform_account", "the platform's remainder needs a bank settlement id", "platform_bank_id")
    if p.items:
        raise SettlementInstructionInvalid(p.items)
    if remainder:
        values[platform_bank_id] = values.get(platform_bank_id, 0) + remainder
    return [{"bank_account_settlement_id": bank_id, "value": value, "type": "FIX"} for bank_id, value in values.items()]
