"""The ranking engine: pure statistics over rollup measures (docs/rankings.md).

Nothing here touches the database or the web: `portal.ranking_data` reads the rollups
and hands over `Tally` values; this module turns them into figures, scores, grades and
ranks. Keep the two in step with docs/rankings.md.
"""

from __future__ import annotations

import calendar
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from portal.errors import Invalid
from portal.regions import check_region, city_of, province_of
from portal.stars import Z_95, wilson_lower_bound

PRIOR_WEIGHT = 50.0  # ratings' worth of the industry mean added to every insurer
MIN_COUNT = 30  # below this an insurer is "insufficient data", not ranked
HALF_LIFE_DAYS = 182.5  # recency view: a rating's weight halves every 6 months
SCORE_PLACES = 1  # the score is rounded once to this: rank, grade, page and export use it
PER_POLICIES = 10_000
# The insurance service evaluation scale's bands over the 0-100 score, best first.
GRADES = (
    (95, "AAA"),
    (90, "AA"),
    (85, "A"),
    (80, "BBB"),
    (75, "BB"),
    (70, "B"),
    (65, "CCC"),
    (60, "CC"),
    (55, "C"),
)
PERIOD_KINDS = ("month", "quarter", "year", "custom")
SCOPE_KINDS = ("national", "province", "city")
MAX_CUSTOM_DAYS = 3 * 366


# -- measures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """Summable rollup measures, possibly weighted (recency view).

    `n`, `total`, `sq`, `top`, `bottom` are the weighted sums of the rollup measures;
    `w2` is the sum of squared rating weights, so (sum w)^2 / sum w^2 is the effective
    number of ratings (Kish). Unweighted, w2 == n.
    """

    n: float = 0.0
    total: float = 0.0
    sq: float = 0.0
    top: float = 0.0
    bottom: float = 0.0
    w2: float = 0.0

    @classmethod
    def of(cls, n: Any, total: Any, sq: Any, top: Any, bottom: Any, weight: float = 1.0) -> Tally:
        """One rollup group (SUMs may be None or Decimal), every rating weighted `weight`."""
        v = [float(x or 0) for x in (n, total, sq, top, bottom)]
        return cls(*(x * weight for x in v), w2=v[0] * weight * weight)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.n + other.n,
            self.total + other.total,
            self.sq + other.sq,
            self.top + other.top,
            self.bottom + other.bottom,
            self.w2 + other.w2,
        )

    @property
    def effective_n(self) -> float:
        return self.n * self.n / self.w2 if self.w2 else 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


def total_of(tallies: Iterable[Tally]) -> Tally:
    return sum(tallies, Tally())


Interval = tuple[float, float | None, float | None]  # (value, low, high); no bounds: none


def mean_interval(t: Tally, z: float = Z_95) -> Interval | None:
    """(mean, low, high): the normal 95% interval of the mean score from n, sum, sum of
    squares. None without ratings; no bounds below two (effective) ratings, where no
    interval can be estimated. With zero sample variance (every rating the same) the
    normal interval would have zero width: the Wilson interval of mean/100 on the
    effective count is used instead, as if each rating were a share of full marks."""
    if t.n <= 0:
        return None
    mean = t.total / t.n
    n_eff = t.effective_n
    if n_eff < 2:
        return mean, None, None
    # Weighted population variance, with Bessel's correction on the effective count.
    variance = max(t.sq / t.n - mean * mean, 0.0) * n_eff / (n_eff - 1)
    if variance <= 1e-9:
        low, high = wilson_interval(min(max(mean / 100, 0.0), 1.0) * n_eff, n_eff, z)
        return mean, 100 * low, 100 * high
    half = z * math.sqrt(variance / n_eff)
    return mean, max(mean - half, 0.0), min(mean + half, 100.0)


def wilson_interval(successes: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of successes/n, in [0, 1].

    The upper end of the interval for p is one minus the lower end for the complement,
    so both come from portal.stars' lower bound. Raises ValueError when n < 1.
    """
    low = wilson_lower_bound(successes, n, z)  # type: ignore[arg-type]
    high = 1.0 - wilson_lower_bound(n - successes, n, z)  # type: ignore[arg-type]
    return low, high


def share_interval(count: float, t: Tally, z: float = Z_95) -> Interval | None:
    """(share, low, high) in percent, Wilson on the effective count; no bounds below two
    (effective) ratings."""
    if t.n <= 0:
        return None
    p = count / t.n
    n_eff = t.effective_n
    if n_eff < 2:
        return 100 * p, None, None
    low, high = wilson_interval(p * n_eff, n_eff, z)
    return 100 * p, 100 * low, 100 * high


def bayesian_average(t: Tally, prior_mean: float, prior_weight: float = PRIOR_WEIGHT) -> float:
    """(sum + m * prior) / (n + m): the mean shrunk toward the slice's industry mean."""
    if prior_weight < 0:
        raise ValueError("prior weight must not be negative")
    if t.n + prior_weight <= 0:
        return prior_mean
    return (t.total + prior_weight * prior_mean) / (t.n + prior_weight)


def per_policies(dissatisfied: float, policies: float | None) -> float | None:
    """Dissatisfied ratings per 10,000 policies in force."""
    if not policies or policies <= 0:
        return None
    return PER_POLICIES * dissatisfied / policies


def complaint_index(
    dissatisfied: float, policies: float | None, all_dissatisfied: float, all_policies: float
) -> float | None:
    """NAIC-style index: share of the dissatisfied ratings / share of the policies.
    1.00 is the industry average; 2.00 means twice its share of dissatisfaction."""
    if not policies or policies <= 0 or all_dissatisfied <= 0 or all_policies <= 0:
        return None
    return (dissatisfied / all_dissatisfied) / (policies / all_policies)


def grade(score: float | None) -> str | None:
    if score is None:
        return None
    for floor, name in GRADES:
        if score >= floor:
            return name
    return "D"


def competition_ranks(
    scores: Sequence[float | None], places: int = SCORE_PLACES
) -> list[int | None]:
    """Standard competition ranking ("1224"), best (highest) first: scores equal at
    `places` decimals share a rank and the next rank skips. None stays unranked."""
    shown = [None if s is None else round(s, places) for s in scores]
    ranked = sorted((s for s in shown if s is not None), reverse=True)
    first: dict[float, int] = {}
    for i, s in enumerate(ranked, start=1):
        first.setdefault(s, i)
    return [None if s is None else first[s] for s in shown]


def rank_change(current: int | None, previous: int | None) -> int | None:
    """Places moved up (positive) or down (negative) since the previous period."""
    if current is None or previous is None:
        return None
    return previous - current


def recency_weight(age_days: float, half_life_days: float = HALF_LIFE_DAYS) -> float:
    """A rating `age_days` old counts 0.5 ** (age / half-life)."""
    if half_life_days <= 0:
        raise ValueError("half-life must be positive")
    return 0.5 ** (max(age_days, 0.0) / half_life_days)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


# -- periods and scopes ------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    kind: str  # month | quarter | year | custom
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def label(self) -> str:
        if self.kind == "month":
            return self.start.strftime("%Y-%m")
        if self.kind == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        if self.kind == "year":
            return str(self.start.year)
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    def previous(self) -> Period:
        """The period of the same kind and length just before this one."""
        if self.kind == "custom":
            end = self.start - timedelta(days=1)
            return Period("custom", end - timedelta(days=self.days - 1), end)
        months = {"month": 1, "quarter": 3, "year": 12}[self.kind]
        return _months_period(self.kind, _add_months(self.start, -months), months)


def _add_months(d: date, k: int) -> date:
    i = d.year * 12 + d.month - 1 + k
    return date(i // 12, i % 12 + 1, 1)


def _months_period(kind: str, start: date, months: int) -> Period:
    last = _add_months(start, months - 1)
    end = last.replace(day=calendar.monthrange(last.year, last.month)[1])
    return Period(kind, start, end)


def month_period(first: date, shift: int = 0) -> Period:
    """The calendar month `shift` months after the one starting on `first`."""
    return _months_period("month", _add_months(first, shift), 1)


def _bad_period(value: str) -> Invalid:
    return Invalid(
        "“%(value)s” is not a period: use 2026-10, 2026-Q4, 2026 or two dates.",
        field="period",
        code="invalid_period",
        value=value[:40],
    )


FIRST_YEAR = 2000  # periods run from this year to the next one (no year 1 or 9999)


def _check_years(period: Period, today: date | None) -> Period:
    last = (today or date.today()).year + 1
    if period.start.year >= FIRST_YEAR and period.end.year <= last:
        return period
    raise Invalid(
        "Choose a period between %(first)s and %(last)s.",
        field="period",
        code="invalid_period",
        first=FIRST_YEAR,
        last=last,
    )


def parse_period(kind: str, value: str, until: str = "", today: date | None = None) -> Period:
    """month "2026-10", quarter "2026-Q4", year "2026", custom "2026-01-01" .. `until`,
    in the years FIRST_YEAR to next year."""
    return _check_years(_parse_period(kind, value, until), today)


def _parse_period(kind: str, value: str, until: str = "") -> Period:
    value = value.strip()
    try:
        if kind == "month" and re.fullmatch(r"\d{4}-\d{2}", value):
            return _months_period(kind, date(int(value[:4]), int(value[5:]), 1), 1)
        m = re.fullmatch(r"(\d{4})-?Q([1-4])", value, re.IGNORECASE)
        if kind == "quarter" and m:
            return _months_period(kind, date(int(m[1]), 3 * int(m[2]) - 2, 1), 3)
        if kind == "year" and re.fullmatch(r"\d{4}", value):
            return _months_period(kind, date(int(value), 1, 1), 12)
        if kind == "custom":
            start, end = date.fromisoformat(value), date.fromisoformat(until.strip())
            if start <= end and (end - start).days < MAX_CUSTOM_DAYS:
                return Period(kind, start, end)
    except ValueError:
        pass
    raise _bad_period(f"{value}..{until}" if kind == "custom" else value)


def current_period(kind: str, today: date) -> Period:
    """The latest complete month, quarter or year before `today` (custom: last 90 days)."""
    if kind == "month":
        return _months_period(kind, _add_months(today.replace(day=1), -1), 1)
    if kind == "quarter":
        this = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        return _months_period(kind, _add_months(this, -3), 3)
    if kind == "year":
        return _months_period(kind, date(today.year - 1, 1, 1), 12)
    return Period("custom", today - timedelta(days=89), today)


@dataclass(frozen=True)
class Scope:
    kind: str = "national"  # national | province | city
    region: str = ""  # 430000 for a province, 430200 for a city

    @property
    def key(self) -> str:
        return self.region or "national"

    def contains(self, region: str | None) -> bool:
        """Whether a branch in `region` counts in this scope (GB/T 2260 prefixes)."""
        if self.kind == "national":
            return True
        if not region:
            return False  # a rating without a branch has no place below national
        if self.kind == "province":
            return province_of(region) == self.region
        return city_of(region) == self.region


def parse_scope(kind: str, region: str = "") -> Scope:
    if kind not in SCOPE_KINDS:
        raise Invalid(
            "Unknown scope “%(value)s”: use national, province or city.",
            field="scope",
            code="invalid_scope",
            value=kind[:20],
        )
    if kind == "national":
        return Scope()
    code = check_region(region)
    return Scope(kind, province_of(code) if kind == "province" else city_of(code))


# -- the ranking -------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """The documented, configurable parameters of a ranking (saved with each snapshot)."""

    prior_weight: float = PRIOR_WEIGHT
    min_count: int = MIN_COUNT
    half_life_days: float | None = None  # None: the plain period view
    z: float = Z_95

    def as_json(self) -> dict[str, Any]:
        return {
            "prior_weight": self.prior_weight,
            "min_count": self.min_count,
            "half_life_days": self.half_life_days,
            "confidence": 0.95,
        }


@dataclass(frozen=True)
class Entry:
    """One subject (insurer, branch or staff member) of a slice, as read from rollups."""

    key: str
    name: str
    tally: Tally
    channels: Mapping[str, Tally] = field(default_factory=dict)
    policies: float | None = None  # policies in force (insurers only)
    extra: Mapping[str, Any] = field(default_factory=dict)  # replies, flags: shown as is


@dataclass(frozen=True)
class Ranked:
    key: str
    name: str
    n: float
    effective_n: float
    mean: Interval | None
    satisfied: Interval | None
    dissatisfied: Interval | None
    score: float | None  # Bayesian average rounded to SCORE_PLACES; None when insufficient
    grade: str | None
    rank: int | None
    change: int | None
    insufficient: bool
    per_10k: float | None
    index: float | None
    channel_mix: dict[str, dict[str, float | None]]
    extra: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        def three(v: Interval | None) -> dict[str, float | None] | None:
            if v is None:
                return None
            return dict(zip(("value", "low", "high"), map(_r2, v), strict=True))

        return {
            "key": self.key,
            "name": self.name,
            "rank": self.rank,
            "rank_change": self.change,
            "insufficient_data": self.insufficient,
            "count": round(self.n, 2),
            "score": self.score,
            "grade": self.grade,
            "mean": three(self.mean),
            "satisfied_pct": three(self.satisfied),
            "dissatisfied_pct": three(self.dissatisfied),
            "dissatisfied_per_10k_policies": _r2(self.per_10k),
            "complaint_index": _r2(self.index),
            "channel_mix": self.channel_mix,
            **{k: v for k, v in self.extra.items() if not k.startswith("_")},
        }


def _r2(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


@dataclass(frozen=True)
class Ranking:
    rows: list[Ranked]
    industry_mean: float | None
    industry: Tally
    medians: dict[str, float | None]
    method: Method


def channel_mix(channels: Mapping[str, Tally], n: float) -> dict[str, dict[str, float | None]]:
    """Each channel's share of the subject's ratings and its mean score."""
    return {
        ch: {"share": _r2(100 * t.n / n) if n else None, "mean": _r2(t.mean)}
        for ch, t in sorted(channels.items())
        if t.n
    }


def rank(
    entries: Sequence[Entry],
    method: Method = Method(),
    previous: Mapping[str, int | None] | None = None,
    all_policies: float | None = None,
) -> Ranking:
    """Score, grade and rank every entry of one slice (all from the same period).
    `all_policies`: the industry's policies in force (every insurer that reported, rated
    or not); by default the sum over the entries that have policies."""
    industry = total_of(e.tally for e in entries)
    prior = industry.mean
    reported = [e for e in entries if e.policies]
    all_d = sum(e.tally.bottom for e in reported)
    all_p = (
        all_policies if all_policies is not None else sum(float(e.policies or 0) for e in reported)
    )
    # Rounded once, here: the rank, the grade, the page and the export all use the score
    # as shown (85.04 and 84.96 both show 85.0: same rank, same grade).
    scores = [
        None
        if prior is None or e.tally.effective_n < method.min_count
        else round(bayesian_average(e.tally, prior, method.prior_weight), SCORE_PLACES)
        for e in entries
    ]
    ranks = competition_ranks(scores)
    rows = []
    for e, score, r in zip(entries, scores, ranks, strict=True):
        rows.append(
            Ranked(
                key=e.key,
                name=e.name,
                n=e.tally.n,
                effective_n=e.tally.effective_n,
                mean=mean_interval(e.tally, method.z),
                satisfied=share_interval(e.tally.top, e.tally, method.z),
                dissatisfied=share_interval(e.tally.bottom, e.tally, method.z),
                score=score,
                grade=grade(score),
                rank=r,
                change=rank_change(r, (previous or {}).get(e.key)),
                insufficient=score is None,
                per_10k=per_policies(e.tally.bottom, e.policies),
                index=complaint_index(e.tally.bottom, e.policies, all_d, all_p),
                channel_mix=channel_mix(e.channels, e.tally.n),
                extra=e.extra,
            )
        )
    rows.sort(key=lambda x: (x.rank is None, x.rank or 0, -x.n, x.key))
    return Ranking(rows, prior, industry, medians(rows), method)


MEDIAN_FIGURES = ("n", "mean", "satisfied", "dissatisfied", "score", "per_10k", "index")


def _figure(row: Ranked, name: str) -> float | None:
    value = getattr(row, name)
    return value[0] if isinstance(value, tuple) else value


def medians(rows: Sequence[Ranked]) -> dict[str, float | None]:
    """The industry median of each figure over the ranked subjects (as the regulator's
    complaint notices publish them); insufficient ones would drag it toward noise."""
    ranked = [r for r in rows if not r.insufficient]
    out = {name: median(_figure(r, name) for r in ranked) for name in MEDIAN_FIGURES}
    for name in ("reply_rate", "reply_days", "change_share"):
        out[name] = median(r.extra.get(name) for r in ranked)
    return out
