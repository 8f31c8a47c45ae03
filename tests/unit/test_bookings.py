"""Where a seller's refund share comes from, and where a settled share goes: pure rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledger.bookings import SellerDebit, split_seller_debit, split_settlement_move

money = st.integers(min_value=0, max_value=10**9)


def test_before_settlement_only_the_orders_own_share_comes_out_of_pending() -> None:
    # Order net 90 still in pending among 180 of the seller's pending; the platform kept its
    # commission, so the seller gives back 100: 90 from the order's share, 10 from available.
    assert split_seller_debit(100, order_settled=False, order_share=90, pending=180, available=30) == SellerDebit(
        pending=90, available=10, debt=0
    )
    # Nothing available: the part beyond the order's share is owed.
    assert split_seller_debit(100, order_settled=False, order_share=90, pending=180, available=0) == SellerDebit(
        pending=90, available=0, debt=10
    )


def test_after_settlement_the_share_comes_out_of_available_then_debt() -> None:
    assert split_seller_debit(100, order_settled=True, order_share=0, pending=500, available=60) == SellerDebit(
        pending=0, available=60, debt=40
    )


@given(amount=money, settled=st.booleans(), share=money, pending=money, available=money)
def test_a_refund_share_is_taken_whole_and_never_overdraws(amount, settled, share, pending, available) -> None:
    debit = split_seller_debit(amount, order_settled=settled, order_share=share, pending=pending, available=available)
    assert debit.total == amount
    assert 0 <= debit.pending <= min(pending, share) and 0 <= debit.available <= available and debit.debt >= 0
    assert debit.debt == 0 or debit.available == available  # debt only once available is exhausted
    assert not settled or debit.pending == 0


@given(amount=money, debt=money)
def test_a_settled_share_repays_debt_first(amount, debt) -> None:
    to_debt, to_available = split_settlement_move(amount, debt=debt)
    assert to_debt + to_available == amount and to_debt == min(amount, debt)
