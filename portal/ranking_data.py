"""What the ranking engine reads: rollup sums per subject, and the figures beside them.

Scores come from the rollups (insurers, branches: verified ratings; staff: their own
rollup), never from the ratings table (design.md): `rollup_monthly` and
`rollup_staff_monthly` for periods made of whole months (months, quarters, years, the
trend), the daily ones for other periods and for recency weighting, which needs each
rating's day. Reply figures and channel flags are read from their own tables, as the
insurer pages read them.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Select, func, select

from portal import insurer_stats, phone_reports, rankings, reviews
from portal.errors import Invalid
from portal.models import (
    CHANNELS,
    STAGES,
    Branch,
    CounterFlag,
    Insurer,
    PoliciesInForce,
    RollupDaily,
    RollupMonthly,
    RollupStaffDaily,
    RollupStaffMonthly,
    Staff,
)
from portal.rankings import Entry, Method, Period, Ranking, Scope, Tally
from portal.ratings import CHINA

DAILY = RollupDaily.__table__.c  # type: ignore[attr-defined]
STAFF = RollupStaffDaily.__table__.c  # type: ignore[attr-defined]
MONTHLY = RollupMonthly.__table__.c  # type: ignore[attr-defined]
STAFF_MONTHLY = RollupStaffMonthly.__table__.c  # type: ignore[attr-defined]
LEVELS = ("insurer", "branch", "staff")


@dataclass(frozen=True)
class Slice:
    """One view of the ranking: which ratings, which subjects."""

    period: Period
    scope: Scope = Scope()
    stage: str | None = None
    channel: str | None = None
    recency: bool = False  # weight ratings by age (half-life in the method)
    level: str = "insurer"
    insurer_id: int | None = None  # branch and staff levels: whose

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period.label,
            "period_kind": self.period.kind,
            "from": self.period.start.isoformat(),
            "to": self.period.end.isoformat(),
            "scope": self.scope.kind,
            "region": self.scope.region or None,
            "stage": self.stage,
            "channel": self.channel,
            "recency_weighted": self.recency,
            "level": self.level,
        }


def check_choice(value: str | None, options: tuple[str, ...], name: str) -> str | None:
    """'' or None means all; anything else must be one of `options`."""
    if not value:
        return None
    if value not in options:
        raise Invalid(
            "Invalid value “%(value)s” for the parameter %(name)s.",
            field=name,
            code="invalid_parameter",
            value=value[:40],
            name=name,
        )
    return value


def check_stage_channel(stage: str | None, channel: str | None) -> tuple[str | None, str | None]:
    return check_choice(stage, STAGES, "stage"), check_choice(channel, CHANNELS, "channel")


# -- rollup reads -------------------------------------------------------------------------


def _measures(c: Any) -> list[Any]:
    return [func.sum(c.n), func.sum(c.sum_score), func.sum(c.sum_sq), func.sum(c.top)] + [
        func.sum(c.bottom)
    ]


def whole_months(period: Period) -> bool:
    """The period starts on a month's first day and ends on a month's last day."""
    return period.start.day == 1 and (period.end + timedelta(days=1)).day == 1


def _source(s: Slice, period: Period, staff: bool = False) -> tuple[Any, Any]:
    """The rollup to read (columns) and its time column: the monthly one when the
    period is whole months and no rating's own day matters (recency weighting)."""
    if whole_months(period) and not s.recency:
        c = STAFF_MONTHLY if staff else MONTHLY
        return c, c.month
    c = STAFF if staff else DAILY
    return c, c.day


def _filtered(stmt: Select[Any], c: Any, s: Slice, period: Period) -> Select[Any]:
    # A month's row is dated its first day: in a whole-month period exactly when its
    # days are (the monthly rollup is only read for such periods).
    when = c.month if "month" in c else c.day
    stmt = stmt.where(when >= period.start, when <= period.end)
    if s.stage:
        stmt = stmt.where(c.stage == s.stage)
    if s.channel:
        stmt = stmt.where(c.channel == s.channel)
    return stmt


def _weight(s: Slice, method: Method, period: Period, day: date | None) -> float:
    if not s.recency or day is None:
        return 1.0
    return rankings.recency_weight((period.end - day).days, method.half_life_days or 182.5)


# Branches by connection and scope: one page reads them once, not once per period it
# computes (14 times for a ranking and its trend), and a province's page only its own
# few dozen (the same prefix as _scoped), not all of them. Each read opens its own
# Connection, so a new branch is seen by the next page.
_BRANCHES: weakref.WeakKeyDictionary[Connection, dict[str, dict[int, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _prefix(scope: Scope) -> str:
    """The region prefix of the scope's branches ('' for national)."""
    if scope.kind == "national":
        return ""
    return scope.region[:2] if scope.kind == "province" else scope.region[:4]


def _branches(conn: Connection, scope: Scope) -> dict[int, Any]:
    """id -> branch, for the branches whose region could be in `scope` (all if national)."""
    by_prefix = _BRANCHES.setdefault(conn, {})
    prefix = _prefix(scope)
    found = by_prefix.get(prefix)
    if found is None:
        stmt = select(Branch.id, Branch.insurer_id, Branch.code, Branch.name, Branch.region)
        if prefix:
            stmt = stmt.where(Branch.region.startswith(prefix, autoescape=True))
        found = by_prefix[prefix] = {r.id: r for r in conn.execute(stmt)}
    return found


def _daily_tallies(
    conn: Connection, s: Slice, method: Method, period: Period
) -> dict[tuple[int, int], dict[str, Tally]]:
    """(insurer, branch) -> channel -> tally, verified ratings in the scope."""
    c, when = _source(s, period)
    keys = [c.insurer_id, c.branch_id, c.channel] + ([when] if s.recency else [])
    stmt = _filtered(select(*keys, *_measures(c)).where(c.verified), c, s, period)
    if s.insurer_id is not None:
        stmt = stmt.where(c.insurer_id == s.insurer_id)
    # Narrowed in SQL (a province's branches are a thirtieth of the rows to read and
    # add up) and checked again below with Scope.contains.
    stmt = _scoped(stmt, s, c)
    branches = _branches(conn, s.scope)
    out: dict[tuple[int, int], dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
    for row in conn.execute(stmt.group_by(*keys)):
        iid, bid, channel = row[0], row[1], row[2]
        branch = branches.get(bid)
        if not s.scope.contains(branch.region if branch else None):
            continue
        day = row[3] if s.recency else None
        measures = row[4:] if s.recency else row[3:]
        out[(iid, bid)][channel] += Tally.of(*measures, weight=_weight(s, method, period, day))
    return out


def _staff_tallies(
    conn: Connection, s: Slice, method: Method, period: Period
) -> dict[int, dict[str, Tally]]:
    c, when = _source(s, period, staff=True)
    keys = [c.staff_id, c.channel] + ([when] if s.recency else [])
    stmt = _filtered(
        select(*keys, Branch.region, *_measures(c))
        .join(Staff, Staff.id == c.staff_id)
        .outerjoin(Branch, Branch.id == Staff.branch_id)
        .where(Staff.insurer_id == s.insurer_id),
        c,
        s,
        period,
    )
    out: dict[int, dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
    for row in conn.execute(stmt.group_by(*keys, Branch.region)):
        sid, channel = row[0], row[1]
        day = row[2] if s.recency else None
        region, *measures = row[3:] if s.recency else row[2:]
        if s.scope.contains(region):
            out[sid][channel] += Tally.of(*measures, weight=_weight(s, method, period, day))
    return out


def _entry(key: str, name: str, channels: dict[str, Tally], **kw: Any) -> Entry:
    return Entry(key, name, rankings.total_of(channels.values()), dict(channels), **kw)


def _merge(parts: Iterable[dict[str, Tally]]) -> dict[str, Tally]:
    out: dict[str, Tally] = defaultdict(Tally)
    for part in parts:
        for ch, t in part.items():
            out[ch] += t
    return out


def entries(
    conn: Connection, s: Slice, method: Method, period: Period | None = None
) -> list[Entry]:
    """The subjects of a slice with their tallies (for `period`, default the slice's)."""
    period = period or s.period
    if s.level == "staff":
        staff = {
            r.id: r for r in conn.execute(select(Staff).where(Staff.insurer_id == s.insurer_id))
        }
        tallies = _staff_tallies(conn, s, method, period)
        return [_entry(staff[k].staff_no, staff[k].name, v) for k, v in tallies.items()]
    daily = _daily_tallies(conn, s, method, period)
    if s.level == "branch":
        branches = _branches(conn, s.scope)
        out = []
        for (_, bid), channels in daily.items():
            b = branches.get(bid)
            out.append(_entry(b.code if b else "-", b.name if b else "", channels))
        return out
    by_insurer: dict[int, list[dict[str, Tally]]] = defaultdict(list)
    for (iid, _), channels in daily.items():
        by_insurer[iid].append(channels)
    names = {r.id: r for r in conn.execute(select(Insurer.id, Insurer.code, Insurer.name))}
    return [
        _entry(names[iid].code, names[iid].name, _merge(parts), extra={"_id": iid})
        for iid, parts in by_insurer.items()
    ]


# -- figures beside the score ---------------------------------------------------------------


def policies_in_force(conn: Connection, period: Period) -> dict[int, float]:
    """Each insurer's average reported policies in force over the period's months."""
    first = period.start.replace(day=1)
    stmt = (
        select(PoliciesInForce.insurer_id, func.avg(PoliciesInForce.policies))
        .where(PoliciesInForce.month >= first, PoliciesInForce.month <= period.end)
        .group_by(PoliciesInForce.insurer_id)
    )
    return {int(iid): float(avg) for iid, avg in conn.execute(stmt) if avg}


def utc_start(day: date) -> datetime:
    """The first instant of a China-time day, in UTC: bound parameters are compared with
    UTC timestamps, and SQLite drops a datetime's zone (it would shift the window 8 h)."""
    return datetime.combine(day, time(), tzinfo=CHINA).astimezone(UTC)


def counter_flags(conn: Connection, period: Period) -> dict[int, int]:
    """Counter misuse signals (fast ratings, bursts) raised in the period, per insurer."""
    stmt = (
        select(CounterFlag.insurer_id, func.count())
        .where(
            CounterFlag.created_at >= utc_start(period.start),
            CounterFlag.created_at < utc_start(period.end + timedelta(days=1)),
        )
        .group_by(CounterFlag.insurer_id)
    )
    return {int(iid): int(n) for iid, n in conn.execute(stmt)}


def phone_signals(conn: Connection, insurer_id: int) -> int:
    """Return visits routed to the selling agent's own phone, or one phone shared by
    many customers (current signals, not per period)."""
    return len(phone_reports.agent_phone_signals(conn, insurer_id)) + len(
        phone_reports.shared_phone_signals(conn, insurer_id)
    )


def policy_figures(s: Slice) -> bool:
    """Per-10,000 and the complaint index only where policies in force mean something:
    they are national and unweighted, so the national, all-stage, all-channel plain view."""
    return s.scope.kind == "national" and not s.stage and not s.channel and not s.recency


def _insurer_extras(
    conn: Connection, entries_: list[Entry], period: Period, policies: dict[int, float]
) -> list[Entry]:
    flags = counter_flags(conn, period)
    ids = [int(e.extra["_id"]) for e in entries_]
    # One query per figure for all insurers, not one per insurer (40 insurers made the
    # page ~120 small queries: most of its time, whatever the number of ratings).
    stats = insurer_stats.reply_stats_many(conn, ids, reviews.count_reviews_by_insurer)
    signals = phone_reports.signal_counts(conn, ids)
    out = []
    for e, iid in zip(entries_, ids, strict=True):
        extra = {
            **e.extra,
            "policies_in_force": policies.get(iid),
            "reply_rate": stats[iid].rate,
            "reply_days": stats[iid].median_days,
            "change_share": stats[iid].change_share,
            "counter_flags": flags.get(iid, 0),
            "phone_signals": signals[iid],
        }
        out.append(replace(e, policies=policies.get(iid), extra=extra))
    return out


def build(conn: Connection, s: Slice, method: Method | None = None) -> Ranking:
    """The ranking of one slice, with rank changes against the previous period."""
    method = method or Method()
    if not s.recency:
        method = replace(method, half_life_days=None)
    elif method.half_life_days is None:
        method = replace(method, half_life_days=rankings.HALF_LIFE_DAYS)
    before = rankings.rank(entries(conn, s, method, s.period.previous()), method)
    previous = {r.key: r.rank for r in before.rows}
    current = entries(conn, s, method)
    if s.level != "insurer":
        return rankings.rank(current, method, previous)
    policies = policies_in_force(conn, s.period)
    current = _insurer_extras(conn, current, s.period, policies)
    if not policy_figures(s):
        current = [replace(e, policies=None) for e in current]
        return rankings.rank(current, method, previous)
    # Every insurer that reported counts in the industry's policies, rated or not.
    return rankings.rank(current, method, previous, all_policies=sum(policies.values()))


TREND_MONTHS = 12
TREND_INSURERS = 8


def _scoped(stmt: Select[Any], s: Slice, c: Any) -> Select[Any]:
    """Only rollup rows of branches in the slice's scope (none for national)."""
    if s.scope.kind == "national":
        return stmt
    # The same prefix test as Scope.contains; rows without a branch are never in it.
    prefix = _prefix(s.scope)
    local = select(Branch.id).where(Branch.region.startswith(prefix, autoescape=True))
    return stmt.where(c.branch_id.in_(local))


def _monthly_insurers(
    conn: Connection, s: Slice, periods: list[Period]
) -> list[dict[str, tuple[str, Tally]]]:
    """Per month p, insurer code -> (name, tally): what `entries(conn, s, Method(), p)`
    gives as each entry's name and total tally (plain, insurer level), in ONE query over
    the monthly rollup, summed over channels and branches by the database (the trend
    needs no per-channel figures: a third of the rows, and no Entry per insurer-month)."""
    c = MONTHLY
    span = Period("custom", periods[0].start, periods[-1].end)
    stmt = _filtered(select(c.month, c.insurer_id, *_measures(c)).where(c.verified), c, s, span)
    stmt = _scoped(stmt, s, c).group_by(c.month, c.insurer_id)
    names = {r.id: r for r in conn.execute(select(Insurer.id, Insurer.code, Insurer.name))}
    index = {p.start: i for i, p in enumerate(periods)}  # a month row is dated its 1st
    out: list[dict[str, tuple[str, Tally]]] = [{} for _ in periods]
    for month, iid, *measures in conn.execute(stmt):
        out[index[month]][names[iid].code] = (names[iid].name, Tally.of(*measures))
    return out


def trend(conn: Connection, s: Slice, months: int = TREND_MONTHS) -> dict[str, Any]:
    """Monthly mean score per insurer over the `months` months ending with the slice's
    period, in the slice's scope, stage and channel (the busiest insurers only)."""
    last = s.period.end.replace(day=1)
    periods = [rankings.month_period(last, k - months + 1) for k in range(months)]
    plain = replace(s, recency=False, level="insurer", insurer_id=None)
    by_month = _monthly_insurers(conn, plain, periods)
    totals: dict[str, float] = defaultdict(float)
    names: dict[str, str] = {}
    for month in by_month:
        for code, (name, tally) in month.items():
            totals[code] += tally.n
            names[code] = name
    busiest = sorted(totals, key=lambda c: (-totals[c], c))[:TREND_INSURERS]
    return {
        "months": [p.label for p in periods],
        "series": [
            {
                "key": code,
                "name": names[code],
                "values": [
                    None
                    if code not in m or m[code][1].mean is None
                    else round(m[code][1].mean or 0, 1)
                    for m in by_month
                ],
            }
            for code in busiest
        ],
    }
