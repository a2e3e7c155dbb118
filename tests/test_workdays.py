"""Working-day arithmetic on the statutory calendar (2026: Mid-Autumn and National Day)."""

from datetime import date

import pytest

from portal.workdays import add_working_days, is_working_day, known, working_days_between


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 9, 18), True),  # an ordinary Friday
        (date(2026, 9, 19), False),  # an ordinary Saturday
        (date(2026, 9, 20), True),  # Sunday made a working day (调休)
        (date(2026, 9, 25), False),  # Mid-Autumn Festival, a Friday
        (date(2026, 10, 1), False),  # National Day
        (date(2026, 10, 7), False),  # last day of the Golden Week
        (date(2026, 10, 10), True),  # Saturday made a working day
        (date(2026, 10, 11), False),
    ],
)
def test_statutory_calendar(day, working):
    assert is_working_day(day) is working


def test_counting_across_golden_week():
    # Rated on 30 Sep, answered on 9 Oct: only 8 and 9 Oct were working days.
    assert working_days_between(date(2026, 9, 30), date(2026, 10, 9)) == 2
    assert working_days_between(date(2026, 9, 30), date(2026, 9, 30)) == 0
    assert working_days_between(date(2026, 10, 9), date(2026, 9, 30)) == 0
    # Friday to Monday is one working day.
    assert working_days_between(date(2026, 11, 20), date(2026, 11, 23)) == 1


def test_adding_working_days_skips_holidays_and_uses_make_up_days():
    # 5 working days after 29 Sep: 30 Sep, 8, 9, 10 (a Saturday make-up day), 12 Oct.
    assert add_working_days(date(2026, 9, 29), 5) == date(2026, 10, 12)
    assert add_working_days(date(2026, 9, 29), 0) == date(2026, 9, 29)
    with pytest.raises(ValueError):
        add_working_days(date(2026, 9, 29), -1)


def test_years_without_published_calendar_fall_back_to_weekdays():
    far = date(2099, 1, 5)  # a Monday
    assert not known(far)
    assert known(date(2026, 1, 5))
    assert is_working_day(far) and not is_working_day(date(2099, 1, 4))
