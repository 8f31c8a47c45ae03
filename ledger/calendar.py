"""DOKU's business calendar (pure): WIB days, working days, and when Jenius settles.

Rule: every date this service reasons about is a WIB calendar day (DOKU's time zone, UTC+7, no
daylight saving), and "T+n" counts working days: Saturdays, Sundays and the given ``holidays`` are
skipped. Nothing here reads the clock; ``today`` is always passed in.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, time, timedelta, timezone

WIB = timezone(timedelta(hours=7), "WIB")  # DOKU's business time zone
SETTLEMENT_HOUR = time(12, 0, tzinfo=WIB)  # Jenius settles daily 12:00-14:00 WIB


def is_working_day(day: date, holidays: Collection[date] = ()) -> bool:
    return day.weekday() < 5 and day not in holidays


def add_working_days(day: date, count: int, holidays: Collection[date] = ()) -> date:
    """The ``count``-th working day after ``day`` (``day`` itself is not counted)."""
    while count > 0:
        day += timedelta(days=1)
        if is_working_day(day, holidays):
            count -= 1
    return day


def working_days_between(start: date, end: date, holidays: Collection[date] = ()) -> int:
    """Working days ``d`` with ``start < d <= end`` (0 when ``end <= start``)."""
    days = 0
    day = start
    while day < end:
        day += timedelta(days=1)
        if is_working_day(day, holidays):
            days += 1
    return days


def wib_day(moment: datetime) -> date:
    """The WIB calendar day of an aware instant."""
    return moment.astimezone(WIB).date()


def wib_period(first: date, last: date) -> tuple[datetime, datetime]:
    """The instants ``[start, end)`` covering WIB days ``first`` to ``last`` inclusive."""
    return datetime.combine(first, time(0), WIB), datetime.combine(last + timedelta(days=1), time(0), WIB)
