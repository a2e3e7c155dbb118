"""Working days on the Chinese statutory calendar (法定节假日 and 调休 make-up days).

The calendar data comes from the ``chinesecalendar`` package, which follows the State
Council's yearly holiday notices. A year the package does not know yet (the notice for
next year is published each November) falls back to Monday-Friday, so the portal keeps
working; `known(day)` tells callers whether the answer is authoritative.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import chinese_calendar

__all__ = [
    "add_working_days",
    "is_statutory_holiday",
    "is_working_day",
    "known",
    "working_days_between",
]


def known(day: date) -> bool:
    """True when the statutory calendar for ``day``'s year is in the installed data."""
    try:
        chinese_calendar.is_workday(day)
    except NotImplementedError:
        return False
    return True


@lru_cache(maxsize=8192)
def is_working_day(day: date) -> bool:
    """A statutory working day: holidays are off, make-up Saturdays/Sundays are on."""
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        return day.weekday() < 5


@lru_cache(maxsize=8192)
def is_statutory_holiday(day: date) -> bool:
    """A day off by the State Council's notice (春节, 国庆, ...), not an ordinary weekend.

    A weekend that falls inside a holiday (the Saturday of the Golden Week) is a holiday
    too. Unknown years have no statutory holidays (see the module docstring).
    """
    try:
        off, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        return False
    return bool(off and name)


def working_days_between(start: date, end: date) -> int:
    """Working days that have passed from ``start`` to ``end``.

    Counts the working days in (start, end]: a rating made on Friday and answered the
    following Monday took 1 working day; answered the same day, 0. Never negative.
    """
    if end <= start:
        return 0
    count = 0
    day = start + timedelta(days=1)
    while day <= end:
        count += is_working_day(day)
        day += timedelta(days=1)
    return count


def add_working_days(start: date, n: int) -> date:
    """The day on which ``n`` working days after ``start`` have passed (n >= 0)."""
    if n < 0:
        raise ValueError("n must not be negative")
    day = start
    while n:
        day += timedelta(days=1)
        n -= is_working_day(day)
    return day
