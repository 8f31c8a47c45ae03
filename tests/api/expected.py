"""The split an order should get, derived here from the rates with exact fractions, independently
of ``ledger.split`` (no shared code): the tests compare the service's numbers with these."""

from __future__ import annotations

import math
from fractions import Fraction


def half_up(value: Fraction) -> int:
    """Round to the nearest rupiah, halves up."""
    return math.floor(value + Fraction(1, 2))


def doku_fee(gross: int, fee_bps: int, fee_fixed: int) -> int:
    return half_up(Fraction(gross * fee_bps, 10_000)) + fee_fixed


def cart_split(
    items: list[tuple[str, int, int, str]], *, fee_bps: int, fee_fixed: int, commission_bps: int
) -> dict[str, int]:
    """Fee borne by the platform: each seller gets its subtotal less commission; the platform its
    commissions less DOKU's fee. Keys: seller ids, "platform", "doku_fee"."""
    subtotals: dict[str, int] = {}
    for _, price, qty, seller in items:
        subtotals[seller] = subtotals.get(seller, 0) + price * qty
    gross = sum(subtotals.values())
    fee = doku_fee(gross, fee_bps, fee_fixed)
    commissions = {s: half_up(Fraction(sub * commission_bps, 10_000)) for s, sub in subtotals.items()}
    parts = {s: subtotals[s] - commissions[s] for s in subtotals}
    parts["platform"] = sum(commissions.values()) - fee
    parts["doku_fee"] = fee
    assert sum(parts.values()) == gross
    return parts


def proportional(amount: int, weights: dict[str, int]) -> dict[str, int]:
    """``amount`` shared in proportion to ``weights`` (largest remainder); only for weights whose
    remainders differ, so the tie-break never matters."""
    total = sum(weights.values())
    exact = {k: Fraction(amount * w, total) for k, w in weights.items()}
    parts = {k: math.floor(v) for k, v in exact.items()}
    left = amount - sum(parts.values())
    ranked = sorted(exact, key=lambda k: exact[k] - parts[k], reverse=True)
    remainders = [exact[k] - parts[k] for k in ranked]
    assert left == 0 or remainders[left - 1] != remainders[left], "a tie: choose other numbers"
    for k in ranked[:left]:
        parts[k] += 1
    return parts
