"""Insurer figures for the public pages: the directory and one insurer's profile.

Scores come from `rollup_daily` only (design.md: rankings never scan raw ratings on a
page view), and only from verified ratings, like the regulator's overview. The star
distribution is derived from the rollup measures too: every rating's score is one of
0, 25, 50, 75, 100 (stars 1-5; the 3-level scale lands on 100/50/0, i.e. 5/3/1 stars),
and a group's count, sum, sum of squares, top box (score 100) and bottom box (score
<= 25) are five independent equations in the five bucket counts. See `star_counts`.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, func, select

from portal.errors import NotFound
from portal.models import CHANNELS, STAGES, Insurer, RatingText, Reply, RollupDaily

DAILY = RollupDaily.__table__.c  # type: ignore[attr-defined]
STARS = (5, 4, 3, 2, 1)
SORTS = ("score", "count", "name")
TREND_MONTHS = 12
ReviewCounter = Callable[[Connection, int], int]
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_MEASURES = (
    func.sum(DAILY.n),
    func.sum(DAILY.sum_score),
    func.sum(DAILY.sum_sq),
    func.sum(DAILY.top),
    func.sum(DAILY.bottom),
)


@dataclass(frozen=True)
class Measures:
    """Summable rollup measures of a group of ratings."""

    n: int = 0
    total: int = 0
    sq: int = 0
    top: int = 0
    bottom: int = 0

    @classmethod
    def of(cls, values: Iterable[Any]) -> Measures:
        return cls(*(int(v or 0) for v in values))

    def __add__(self, other: Measures) -> Measures:
        return Measures(
            self.n + other.n,
            self.total + other.total,
            self.sq + other.sq,
            self.top + other.top,
            self.bottom + other.bottom,
        )

    @property
    def mean(self) -> float | None:
        return round(self.total / self.n, 1) if self.n else None

    def share(self, count: int) -> float | None:
        return round(100 * count / self.n, 1) if self.n else None

    def summary(self) -> dict[str, Any]:
        """The JSON shape `rollups._summary` uses: n, mean, top and bottom shares."""
        return {
            "n": self.n,
            "mean": self.mean,
            "top_share": self.share(self.top),
            "bottom_share": self.share(self.bottom),
        }


def star_counts(m: Measures) -> dict[int, int] | None:
    """Ratings per star (5..1), solved exactly from the rollup measures.

    With x_k ratings of score 25k (k = stars - 1): x4 = top, x0 + x1 = bottom,
    sum x = n, sum k x = total/25, sum k^2 x = sq/625. None if the measures are not
    consistent (a rollup out of step with the ratings: `portal rollups rebuild`).
    """
    if m.total % 25 or m.sq % 625:
        return None
    s, q = m.total // 25 - 4 * m.top, m.sq // 625 - 16 * m.top
    middle = m.n - m.bottom - m.top  # x2 + x3
    if (q - s - 2 * middle) % 4:
        return None
    x3 = (q - s - 2 * middle) // 4
    x2 = middle - x3
    x1 = s - 2 * middle - x3
    x0 = m.bottom - x1
    counts = {5: m.top, 4: x3, 3: x2, 2: x1, 1: x0}
    return counts if min(counts.values()) >= 0 else None


# -- pinyin search ---------------------------------------------------------------------


@lru_cache(maxsize=4096)
def pinyin_keys(name: str) -> tuple[str, str]:
    """(full pinyin, initials) of a name, lower-case letters and digits only."""
    # Imported here: pypinyin's dictionaries cost ~55 MB per process, which only the
    # directory and search pages need (not the channel APIs; docs/performance.md).
    from pypinyin import Style, lazy_pinyin

    full = "".join(lazy_pinyin(name, style=Style.NORMAL))
    initials = "".join(lazy_pinyin(name, style=Style.FIRST_LETTER))
    return _NOT_ALNUM.sub("", full.lower()), _NOT_ALNUM.sub("", initials.lower())


def _has_cjk(text: str) -> bool:
    return any(unicodedata.east_asian_width(c) in "WF" and c.isalpha() for c in text)


def normalise_query(q: str) -> str:
    """NFKC (full-width letters become ASCII), lower case, no spaces or separators."""
    q = unicodedata.normalize("NFKC", q).lower()
    return "".join(c for c in q if c.isalnum())[:50]


def name_matches(code: str, name: str, q: str) -> bool:
    """Chinese name substring, or pinyin (full or initials) / code substring."""
    q = normalise_query(q)
    if not q:
        return True
    plain = normalise_query(name)
    if _has_cjk(q):
        return q in plain
    full, initials = pinyin_keys(name)
    return any(q in key for key in (full, initials, code.lower(), plain))


def term_matches(code: str, name: str, q: str) -> bool:
    """Any one term of a review query names this insurer (ASCII terms: 2+ letters)."""
    terms = [normalise_query(t) for t in q.split()]
    return any(name_matches(code, name, t) for t in terms if len(t) >= 2 or (t and _has_cjk(t)))


# -- the directory ---------------------------------------------------------------------


@dataclass(frozen=True)
class InsurerRow:
    code: str
    name: str
    ratings: int  # all ratings, verified or not
    verified: Measures
    stages: dict[str, Measures] = field(default_factory=dict)  # verified, per stage

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "ratings": {"total": self.ratings, "verified": self.verified.n},
            "score": self.verified.summary(),
            "stages": {s: self.stages.get(s, Measures()).summary() for s in STAGES},
        }


def load_directory(conn: Connection) -> list[InsurerRow]:
    """Every insurer with its verified score, overall and per stage: one rollup query."""
    stmt = select(DAILY.insurer_id, DAILY.stage, DAILY.verified, *_MEASURES).group_by(
        DAILY.insurer_id, DAILY.stage, DAILY.verified
    )
    totals: dict[int, int] = defaultdict(int)
    stages: dict[int, dict[str, Measures]] = defaultdict(lambda: defaultdict(Measures))
    for insurer_id, stage, verified, *values in conn.execute(stmt):
        m = Measures.of(values)
        totals[insurer_id] += m.n
        if verified:
            stages[insurer_id][stage] += m
    rows = []
    for iid, code, name in conn.execute(select(Insurer.id, Insurer.code, Insurer.name)):
        by_stage = dict(stages.get(iid, {}))
        overall = sum(by_stage.values(), Measures())
        rows.append(InsurerRow(code, name, totals.get(iid, 0), overall, by_stage))
    return rows


def name_key(row: InsurerRow) -> tuple[str, str]:
    """Alphabetical by pinyin, as Chinese directories are ordered."""
    return pinyin_keys(row.name)[0], row.code


def sort_directory(rows: Sequence[InsurerRow], sort: str, descending: bool) -> list[InsurerRow]:
    """Sort by name, score or count; insurers without ratings always come last."""
    if sort == "name":
        return sorted(rows, key=name_key, reverse=descending)
    value = (lambda r: r.verified.n) if sort == "count" else (lambda r: r.verified.mean or 0.0)
    rated = sorted((r for r in rows if r.verified.n), key=name_key)
    rated.sort(key=value, reverse=descending)  # stable: ties stay in name order
    return rated + sorted((r for r in rows if not r.verified.n), key=name_key)


def directory(
    conn: Connection, q: str = "", sort: str = "score", descending: bool = True
) -> list[InsurerRow]:
    rows = [r for r in load_directory(conn) if name_matches(r.code, r.name, q)]
    return sort_directory(rows, sort if sort in SORTS else "score", descending)


# -- one insurer -----------------------------------------------------------------------


@dataclass(frozen=True)
class MonthPoint:
    month: date  # the first day of the month (China time)
    n: int
    mean: float | None


@dataclass(frozen=True)
class ReplyStats:
    replied: int  # written reviews with a reply from the insurer
    reviews: int  # written reviews (the denominator of the rate)
    median_days: float | None  # working days from the rating to the reply
    changes: int = 0  # replies that report a concrete change made because of the rating

    @property
    def rate(self) -> float | None:
        if not (self.replied and self.reviews):
            return None
        return round(100 * self.replied / self.reviews, 1)

    @property
    def change_share(self) -> float | None:
        return round(100 * self.changes / self.replied, 1) if self.replied else None

    def as_json(self) -> dict[str, Any]:
        return {
            "replied": self.replied,
            "rate": self.rate,
            "median_working_days": self.median_days,
            "change_share": self.change_share,
        }


@dataclass(frozen=True)
class Profile:
    id: int
    code: str
    name: str
    ratings: int  # all, verified or not
    verified: Measures
    stages: dict[str, Measures]
    channels: dict[str, Measures]
    trend: list[MonthPoint]
    replies: ReplyStats

    def distribution(self, group: str, key: str) -> dict[int, int] | None:
        return star_counts(getattr(self, group).get(key, Measures()))

    def as_json(self) -> dict[str, Any]:
        def part(m: Measures) -> dict[str, Any]:
            stars = star_counts(m)
            return {**m.summary(), "stars": {str(k): v for k, v in (stars or {}).items()}}

        return {
            "code": self.code,
            "name": self.name,
            "ratings": {"total": self.ratings, "verified": self.verified.n},
            "score": part(self.verified),
            "stages": {s: part(self.stages.get(s, Measures())) for s in STAGES},
            "channels": {c: part(self.channels.get(c, Measures())) for c in CHANNELS},
            "trend": [
                {"month": p.month.strftime("%Y-%m"), "n": p.n, "mean": p.mean} for p in self.trend
            ],
            "replies": self.replies.as_json(),
        }


def unknown_insurer(code: str) -> NotFound:
    return NotFound("Unknown insurer “%(value)s”.", code="unknown_insurer", value=code[:16])


def insurer_code(code: str) -> str:
    """The code as stored (upper case); NotFound for anything that cannot be one."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,16}", code):  # also keeps NUL away from the driver
        raise unknown_insurer(code)
    return code.upper()


def find_insurer(conn: Connection, code: str) -> tuple[int, str, str]:
    row = conn.execute(
        select(Insurer.id, Insurer.code, Insurer.name).where(Insurer.code == insurer_code(code))
    ).first()
    if row is None:
        raise unknown_insurer(code)
    return int(row.id), str(row.code), str(row.name)


def profile(
    conn: Connection, code: str, today: date, count_reviews: ReviewCounter | None = None
) -> Profile:
    """Everything the insurer page shows above its reviews. `count_reviews(conn, id)`
    gives the written reviews (only asked when there are replies to rate)."""
    iid, code, name = find_insurer(conn, code)
    stages, channels, total = _breakdown(conn, iid)
    return Profile(
        id=iid,
        code=code,
        name=name,
        ratings=total,
        verified=sum(stages.values(), Measures()),
        stages=stages,
        channels=channels,
        trend=trend(conn, iid, today),
        replies=reply_stats(conn, iid, count_reviews),
    )


def _breakdown(conn: Connection, iid: int) -> tuple[dict[str, Measures], dict[str, Measures], int]:
    """Verified measures per stage and per channel, and the count of all ratings."""
    stmt = (
        select(DAILY.stage, DAILY.channel, DAILY.verified, *_MEASURES)
        .where(DAILY.insurer_id == iid)
        .group_by(DAILY.stage, DAILY.channel, DAILY.verified)
    )
    stages: dict[str, Measures] = defaultdict(Measures)
    channels: dict[str, Measures] = defaultdict(Measures)
    total = 0
    for stage, channel, verified, *values in conn.execute(stmt):
        m = Measures.of(values)
        total += m.n
        if verified:
            stages[stage] += m
            channels[channel] += m
    return dict(stages), dict(channels), total


def month_starts(today: date, months: int = TREND_MONTHS) -> list[date]:
    """The first days of the last `months` months, oldest first, ending with today's."""
    index = today.year * 12 + today.month - 1
    return [date(i // 12, i % 12 + 1, 1) for i in range(index - months + 1, index + 1)]


def trend(conn: Connection, iid: int, today: date) -> list[MonthPoint]:
    """Monthly verified count and mean over the last 12 months (China-time days)."""
    months = month_starts(today)
    stmt = (
        select(DAILY.day, func.sum(DAILY.n), func.sum(DAILY.sum_score))
        .where(DAILY.insurer_id == iid, DAILY.verified, DAILY.day >= months[0])
        .group_by(DAILY.day)
    )
    n: dict[date, int] = defaultdict(int)
    total: dict[date, int] = defaultdict(int)
    for day, count, score in conn.execute(stmt):
        first = date(day.year, day.month, 1)
        n[first] += int(count or 0)
        total[first] += int(score or 0)
    return [MonthPoint(m, n[m], round(total[m] / n[m], 1) if n[m] else None) for m in months]


def reply_stats(
    conn: Connection, iid: int, count_reviews: ReviewCounter | None = None
) -> ReplyStats:
    """Share of written reviews the insurer answered, the median working days it took,
    and how many replies report a change made."""
    stmt = (
        select(Reply.working_days, Reply.change_made.is_not(None))
        .join(RatingText, RatingText.rating_id == Reply.rating_id)
        .where(Reply.insurer_id == iid, Reply.author == "insurer")
    )
    rows = conn.execute(stmt).all()
    if not rows:
        return ReplyStats(0, 0, None)
    days = [d for d, _ in rows if d is not None]
    reviews = count_reviews(conn, iid) if count_reviews else len(rows)
    return ReplyStats(
        len(rows),
        max(reviews, len(rows)),
        float(statistics.median(days)) if days else None,
        sum(1 for _, changed in rows if changed),
    )


def reply_stats_many(
    conn: Connection,
    insurer_ids: list[int],
    count_reviews: Callable[[Connection, list[int]], dict[int, int]],
) -> dict[int, ReplyStats]:
    """reply_stats of each insurer, in two queries for all of them."""
    stmt = (
        select(Reply.insurer_id, Reply.working_days, Reply.change_made.is_not(None))
        .join(RatingText, RatingText.rating_id == Reply.rating_id)
        .where(Reply.insurer_id.in_(insurer_ids), Reply.author == "insurer")
    )
    rows: dict[int, list[Any]] = defaultdict(list)
    for iid, days, changed in conn.execute(stmt):
        rows[int(iid)].append((days, changed))
    reviews = count_reviews(conn, sorted(rows)) if rows else {}
    out = {}
    for iid in insurer_ids:
        mine = rows.get(iid)
        if not mine:
            out[iid] = ReplyStats(0, 0, None)
            continue
        days = [d for d, _ in mine if d is not None]
        out[iid] = ReplyStats(
            len(mine),
            max(reviews.get(iid, 0), len(mine)),
            float(statistics.median(days)) if days else None,
            sum(1 for _, changed in mine if changed),
        )
    return out
