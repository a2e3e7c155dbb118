"""When return visits (回访) are due and when customers may be called: pure rules.

- A new policy is visited in the week after issue, a closed claim 14 to 20 days after
  closing: a cycle of 7 call days starting the day after issue / the 14th day after
  closing.
- Calls go out only inside the call windows of the day (China time): working days,
  including make-up working days (调休), have the weekday windows; ordinary weekends the
  weekend window; statutory holidays (春节, 国庆, ...) have none. A holiday inside a cycle
  moves its end back by a day, so every cycle keeps its 7 call days.
- At most 3 attempts per cycle; attempt n of a day goes to the day's n-th window (mod the
  number of windows), so a customer who is at work in the morning is tried later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from portal.ratings import CHINA
from portal.workdays import is_statutory_holiday, is_working_day

KINDS = {"new_policy": "issuance", "claim": "claim"}  # task kind -> the stage it rates
CYCLE_CALL_DAYS = 7
FIRST_DAY = {"new_policy": 1, "claim": 14}  # days after the issue / closing date
MAX_ATTEMPTS = 3
MAX_CALENDAR_DAYS = 60  # a cycle never spans more (no holiday is that long)


@dataclass(frozen=True)
class Window:
    start: time
    end: time

    @property
    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def holds(self, moment: time) -> bool:
        return self.start <= moment < self.end


WEEKDAY_WINDOWS = (
    Window(time(9, 30), time(12, 0)),
    Window(time(14, 30), time(17, 30)),
    Window(time(19, 0), time(21, 0)),
)
WEEKEND_WINDOWS = (Window(time(10, 30), time(12, 30)),)


def windows(day: date) -> tuple[Window, ...]:
    """The call windows of a China-time calendar day (none on statutory holidays)."""
    if is_statutory_holiday(day):
        return ()
    return WEEKDAY_WINDOWS if is_working_day(day) else WEEKEND_WINDOWS


def is_call_day(day: date) -> bool:
    return bool(windows(day))


def cycle_from(start: date) -> tuple[date, date]:
    """(first, last) day of a cycle of CYCLE_CALL_DAYS call days beginning on or after start."""
    days: list[date] = []
    day = start
    while len(days) < CYCLE_CALL_DAYS and (day - start).days < MAX_CALENDAR_DAYS:
        if is_call_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days[0], days[-1]


def first_cycle(kind: str, event_date: date) -> tuple[date, date]:
    """The due days of a new task: after an issue date or a claim's closing date."""
    return cycle_from(event_date + timedelta(days=FIRST_DAY[kind]))


def window_for(day: date, attempts: int) -> Window | None:
    """Where the next attempt goes on `day`, after `attempts` earlier ones in the cycle."""
    options = windows(day)
    return options[attempts % len(options)] if options else None


def in_call_window(at: datetime) -> bool:
    """Whether a call at this moment (any offset) falls in a window of its China day."""
    local = at.astimezone(CHINA)
    return any(w.holds(local.time()) for w in windows(local.date()))


def china_day(at: datetime) -> date:
    return at.astimezone(CHINA).date()
