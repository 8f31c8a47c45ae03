"""Integer money: rounding and apportionment with no floats.

Rule: money is ``int`` rupiah and rates are ``int`` basis points (``BPS`` = 10 000 = 100 %).
No floats, no Decimals: every function here takes and returns ``int`` and refuses anything else
with ``TypeError`` (``bool`` included, it is an ``int`` only by accident). The arithmetic is exact
integer arithmetic, and an apportionment always returns parts that sum exactly to the whole.

Rounding rules (docs/split-rules.md has worked examples):

- ``div_half_up(n, d)`` is n/d rounded to the nearest integer, exact halves towards +infinity
  (for the non-negative amounts of a ledger: half up, as taught at school). ``apply_bps_half_up``
  is ``div_half_up(amount * bps, BPS)``.
- ``allocate_largest_remainder(total, weights)`` is Hamilton's method: every party first gets the
  floor of its exact share ``total * weight / sum(weights)``; the rupiah left over (fewer than the
  number of parties) go one each to the parties ranked first by
    1. larger remainder (the fractional part of the exact share),
    2. then larger weight,
    3. then smaller party key (keys compared with ``<``; ``str`` keys in code-point order).
  So each part is within one rupiah of its exact share (exact shares are never rounded), a zero
  weight gets zero, and the result depends only on the mapping's content, not its order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

BPS = 10_000  # basis points in 100 %

K = TypeVar("K")


def require_int(value: object, name: str = "value") -> int:
    """Return ``value`` if it is exactly an ``int``; raise ``TypeError`` otherwise (floats, bools, Decimals)."""
    if type(value) is not int:
        raise TypeError(f"{name} must be int, got {type(value).__name__}")
    return value


def div_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, halves towards +infinity."""
    require_int(numerator, "numerator")
    require_int(denominator, "denominator")
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    # floor(n/d + 1/2) == floor((2n + d) / 2d)
    return (2 * numerator + denominator) // (2 * denominator)


def apply_bps_half_up(amount: int, bps: int) -> int:
    """``amount * bps / 10 000`` rounded half up: 5 % of 63 999 is 3 199.95 -> 3 200."""
    require_int(amount, "amount")
    require_int(bps, "bps")
    return div_half_up(amount * bps, BPS)


def allocate_largest_remainder(total: int, weights: Mapping[K, int]) -> dict[K, int]:
    """Split ``total`` in proportion to ``weights``; the parts sum exactly to ``total``.

    Each part is ``floor(exact share)`` or one more; leftover rupiah go by the tie-break in the
    module docstring. Weights may be negative as long as their sum is positive (used for a party
    that receives money back on a refund); all-zero weights are allowed only for a zero total.
    The result keeps the keys in the order given.
    """
    require_int(total, "total")
    for key, weight in weights.items():
        require_int(weight, f"weight of {key!r}")
    weight_sum = sum(weights.values())
    if weight_sum <= 0:
        if total == 0 and all(weight == 0 for weight in weights.values()):
            return {key: 0 for key in weights}
        raise ValueError("weights must sum to a positive number (or all be zero with a zero total)")
    parts = {key: (total * weight) // weight_sum for key, weight in weights.items()}
    # Remainders share the denominator weight_sum, so their numerators compare directly.
    remainders = {key: (total * weight) % weight_sum for key, weight in weights.items()}
    leftover = total - sum(parts.values())
    ranked = sorted(weights, key=lambda key: (-remainders[key], -weights[key], key))
    for key in ranked[:leftover]:
        parts[key] += 1
    return parts
