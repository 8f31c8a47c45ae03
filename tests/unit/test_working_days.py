"""Working days for "owed by DOKU" (pure): T+n skips weekends and holidays, and agrees with the
DOKU sandbox's independent settlement-date rule."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from jenius.sandbox_report import settlement_date
from ledger.calendar import add_working_days, is_working_day, working_days_between

days = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31))


def test_t_plus_two_skips_the_weekend():
    friday, saturday = date(2024, 5, 3), date(2024, 5, 4)
    assert add_working_days(friday, 2) == date(2024, 5, 7)  # Tuesday
    assert add_working_days(saturday, 2) == date(2024, 5, 7)
    assert add_working_days(date(2024, 5, 6), 2) == date(2024, 5, 8)  # Monday -> Wednesday


def test_holidays_are_skipped_like_weekends():
    waisak = date(2024, 5, 23)  # a Thursday
    assert add_working_days(date(2024, 5, 22), 2) == date(2024, 5, 24)
    assert add_working_days(date(2024, 5, 22), 2, holidays={waisak}) == date(2024, 5, 27)
    assert working_days_between(date(2024, 5, 22), date(2024, 5, 27), holidays={waisak}) == 2


@given(days, st.integers(min_value=0, max_value=30))
def test_counting_back_the_working_days_added_gives_the_count(day, n):
    due = add_working_days(day, n)
    assert working_days_between(day, due) == n
    assert n == 0 or is_working_day(due)
    assert due - day <= timedelta(days=n + 2 + 2 * (n // 5))


@given(days)
def test_agrees_with_the_sandbox_settlement_date(day):
    assert add_working_days(day, 2) == settlement_date(day)


@given(days, days)
def test_no_working_days_between_a_day_and_an_earlier_one(a, b):
    assert working_days_between(max(a, b), min(a, b)) == 0
