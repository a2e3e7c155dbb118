"""Service star levels (服务星级) of counter staff, recomputed on read from the staff rollup.

The level ranks the Wilson 95% lower bound of the satisfied share, not the share itself:
3 of 3 satisfied is weak evidence and must not outrank 190 of 200. Rule and limits are
in docs/star-levels.md; keep the two in step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, func, select

from portal.ratings import day_of
from portal.rollups import STAFF

WINDOW_DAYS = 90  # trailing window: recent enough to reflect today's service
MIN_RATINGS = 20  # below this the teller is "new" (no stars yet)
# Wilson lower bound -> stars, checked best first; below the last threshold: 1 star.
THRESHOLDS = ((0.90, 5), (0.80, 4), (0.65, 3), (0.50, 2))
Z_95 = 1.959963984540054  # two-sided 95% normal quantile
COUNTER = "counter"  # only the branch-counter device rates a teller face to face


@dataclass(frozen=True)
class StarLevel:
    stars: int | None  # 1..5, None when new
    n: int  # counter ratings in the window
    satisfied: int  # top-box count in the window
    lower_bound: float | None  # Wilson 95% lower bound of the satisfied share; None when n == 0

    @property
    def is_new(self) -> bool:
        return self.stars is None


def wilson_lower_bound(successes: int, n: int, z: float = Z_95) -> float:
    """Lower end of the Wilson score interval for successes/n, in [0, 1].

    Raises ValueError when n < 1 (no evidence has no interval: callers decide what an
    empty record means), when successes is outside 0..n, or when z is not positive.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    if not (z > 0 and math.isfinite(z)):
        raise ValueError(f"z must be a positive finite number, got {z}")
    if successes == 0:
        # Exactly 0 in theory; in floats the two terms below cancel to +-1e-19 instead.
        return 0.0
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (centre - spread) / (1 + z2 / n)


def stars_from_bound(lower_bound: float) -> int:
    """Stars for a lower bound: the first threshold it reaches (inclusive), else 1."""
    for threshold, stars in THRESHOLDS:
        if lower_bound >= threshold:
            return stars
    return 1


def stars_for(satisfied: int, n: int) -> StarLevel:
    """The level for `satisfied` of `n` counter ratings in the window.

    n == 0 is allowed (a teller nobody rated yet): new, with no lower bound.
    """
    if n < 0 or not 0 <= satisfied <= n:
        raise ValueError(f"need 0 <= satisfied <= n, got {satisfied} of {n}")
    if n == 0:
        return StarLevel(stars=None, n=0, satisfied=0, lower_bound=None)
    bound = wilson_lower_bound(satisfied, n)
    # The bound is still reported for new staff so a manager can see the trend.
    stars = stars_from_bound(bound) if n >= MIN_RATINGS else None
    return StarLevel(stars=stars, n=n, satisfied=satisfied, lower_bound=bound)


def china_today() -> date:
    """Today's date in China time, the calendar the rollup days use."""
    return day_of(datetime.now(UTC))


def staff_stars(
    conn: Connection, staff_ids: Sequence[int], today: date | None = None
) -> dict[int, StarLevel]:
    """Star levels of the given staff as of `today` (default: China-time today).

    Reads only rollup_staff_daily: counter channel, all stages, days in
    (today - WINDOW_DAYS, today]. One grouped query, so at most WINDOW_DAYS x stages
    rows per staff member are summed. Staff without ratings get stars_for(0, 0).
    """
    ids = sorted(set(staff_ids))
    if not ids:
        return {}
    last = today if today is not None else china_today()
    # Half-open (today - 90, today]: exactly 90 calendar days, today included.
    after = last - timedelta(days=WINDOW_DAYS)
    stmt = (
        select(STAFF.c.staff_id, func.sum(STAFF.c.n), func.sum(STAFF.c.top))
        .where(
            STAFF.c.staff_id.in_(ids),
            STAFF.c.channel == COUNTER,
            STAFF.c.day > after,
            STAFF.c.day <= last,
        )
        .group_by(STAFF.c.staff_id)
    )
    # SUM may come back as Decimal (PostgreSQL bigint sums) or None; normalise to int.
    found = {int(sid): (int(top or 0), int(n or 0)) for sid, n, top in conn.execute(stmt)}
    return {sid: stars_for(*found.get(sid, (0, 0))) for sid in ids}
