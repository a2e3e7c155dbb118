"""What insurers and the regulator see of the counter channel: devices, completion
rates (sessions offered vs rated), star levels and misuse signals. Reads rollups and
the small device/session tables, never the raw ratings."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Select, case, func, select

from portal import stars
from portal.models import (
    Branch,
    CounterFlag,
    CounterSession,
    Device,
    Insurer,
    RollupCounterDaily,
    RollupStaffDaily,
    Staff,
)
from portal.ratings import CHINA

DAYS = 30  # completion rates cover the last 30 days
JUMP_RECENT_DAYS = 7
JUMP_MIN_RECENT = 10
JUMP_MIN_PRIOR = 20
JUMP_POINTS = 0.25  # satisfied share up by 25 points or more week on quarter


today = stars.china_today


def china_midnight(day: date) -> datetime:
    """The instant a China-time day starts: the same window as the rollups' `day > since`."""
    return datetime.combine(day, time.min, CHINA)


def percent(opened: int, rated: int) -> float | None:
    return round(100 * rated / opened, 1) if opened else None


def devices(conn: Connection, insurer_id: int) -> list[dict[str, Any]]:
    since = today() - timedelta(days=DAYS)
    counts = (
        select(
            CounterSession.device_id,
            func.count().label("opened"),
            func.count(CounterSession.rating_id).label("rated"),
        )
        .where(CounterSession.opened_at >= china_midnight(since + timedelta(days=1)))
        .group_by(CounterSession.device_id)
        .subquery()
    )
    rows = conn.execute(
        select(
            Device.id,
            Device.label,
            Device.created_at,
            Device.last_seen_at,
            Device.revoked_at,
            Branch.name.label("branch"),
            func.coalesce(counts.c.opened, 0).label("opened"),
            func.coalesce(counts.c.rated, 0).label("rated"),
        )
        .join(Branch, Branch.id == Device.branch_id)
        .outerjoin(counts, counts.c.device_id == Device.id)
        .where(Device.insurer_id == insurer_id)
        .order_by(Device.revoked_at.is_not(None), Branch.name, Device.id)
    )
    return [dict(r._mapping) | {"completion": percent(r.opened, r.rated)} for r in rows]


def _completion(stmt: Select[Any], since: date) -> Select[Any]:
    return stmt.where(RollupCounterDaily.day > since)


def staff(conn: Connection, insurer_id: int) -> list[dict[str, Any]]:
    """Every staff member with star level and 30-day completion rate."""
    since = today() - timedelta(days=DAYS)
    done = _completion(
        select(
            RollupCounterDaily.staff_id,
            func.sum(RollupCounterDaily.opened).label("opened"),
            func.sum(RollupCounterDaily.rated).label("rated"),
        ).group_by(RollupCounterDaily.staff_id),
        since,
    ).subquery()
    rows = conn.execute(
        select(
            Staff.id,
            Staff.staff_no,
            Staff.name,
            Staff.role,
            Branch.name.label("branch"),
            func.coalesce(done.c.opened, 0).label("opened"),
            func.coalesce(done.c.rated, 0).label("rated"),
        )
        .outerjoin(Branch, Branch.id == Staff.branch_id)
        .outerjoin(done, done.c.staff_id == Staff.id)
        .where(Staff.insurer_id == insurer_id, Staff.active)
        .order_by(Branch.name, Staff.staff_no)
    ).all()
    levels = stars.staff_stars(conn, [r.id for r in rows])
    return [
        dict(r._mapping)
        | {"stars": levels[r.id], "completion": percent(int(r.opened), int(r.rated))}
        for r in rows
    ]


def completion_by_branch(
    conn: Connection,
    insurer_id: int | None = None,
) -> list[dict[str, Any]]:
    """Branches with the lowest share of rated sessions first: who rarely lets customers rate."""
    since = today() - timedelta(days=DAYS)
    stmt = _completion(
        select(
            Insurer.name.label("insurer"),
            Branch.name.label("branch"),
            func.sum(RollupCounterDaily.opened).label("opened"),
            func.sum(RollupCounterDaily.rated).label("rated"),
        )
        .join(Branch, Branch.id == RollupCounterDaily.branch_id)
        .join(Insurer, Insurer.id == RollupCounterDaily.insurer_id)
        .group_by(Insurer.name, Branch.name),
        since,
    )
    if insurer_id is not None:
        stmt = stmt.where(RollupCounterDaily.insurer_id == insurer_id)
    rows = [
        dict(r._mapping) | {"completion": percent(int(r.opened), int(r.rated))}
        for r in conn.execute(stmt)
    ]
    return sorted(rows, key=lambda r: (r["completion"] or 0, r["insurer"], r["branch"]))


def completion_by_insurer(conn: Connection) -> list[dict[str, Any]]:
    since = today() - timedelta(days=DAYS)
    stmt = _completion(
        select(
            Insurer.code,
            Insurer.name,
            func.sum(RollupCounterDaily.opened).label("opened"),
            func.sum(RollupCounterDaily.rated).label("rated"),
        )
        .join(Insurer, Insurer.id == RollupCounterDaily.insurer_id)
        .group_by(Insurer.code, Insurer.name),
        since,
    )
    rows = [
        dict(r._mapping) | {"completion": percent(int(r.opened), int(r.rated))}
        for r in conn.execute(stmt)
    ]
    return sorted(rows, key=lambda r: (r["completion"] or 0, r["code"]))


def flags(
    conn: Connection,
    insurer_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Recorded signals (fast ratings, bursts), newest first, plus satisfied-share jumps."""
    stmt = (
        select(
            CounterFlag.kind,
            CounterFlag.created_at,
            CounterFlag.detail,
            CounterFlag.device_id,
            Insurer.name.label("insurer"),
            Branch.name.label("branch"),
            Staff.name.label("staff"),
            Staff.staff_no,
        )
        .join(Insurer, Insurer.id == CounterFlag.insurer_id)
        .join(Branch, Branch.id == CounterFlag.branch_id)
        .outerjoin(Staff, Staff.id == CounterFlag.staff_id)
        .order_by(CounterFlag.created_at.desc())
        .limit(limit)
    )
    if insurer_id is not None:
        stmt = stmt.where(CounterFlag.insurer_id == insurer_id)
    return [dict(r._mapping) | {"detail": json.loads(r.detail)} for r in conn.execute(stmt)]


def satisfied_jumps(conn: Connection, insurer_id: int | None = None) -> list[dict[str, Any]]:
    """Staff whose satisfied share this week jumped far above their last quarter's."""
    end = today()
    cut = end - timedelta(days=JUMP_RECENT_DAYS)
    recent = RollupStaffDaily.day > cut
    stmt = (
        select(
            Staff.id,
            Staff.staff_no,
            Staff.name,
            Insurer.name.label("insurer"),
            func.sum(case((recent, RollupStaffDaily.n), else_=0)).label("rn"),
            func.sum(case((recent, RollupStaffDaily.top), else_=0)).label("rtop"),
            func.sum(case((recent, 0), else_=RollupStaffDaily.n)).label("pn"),
            func.sum(case((recent, 0), else_=RollupStaffDaily.top)).label("ptop"),
        )
        .join(Staff, Staff.id == RollupStaffDaily.staff_id)
        .join(Insurer, Insurer.id == Staff.insurer_id)
        .where(
            RollupStaffDaily.channel == "counter",
            RollupStaffDaily.day > end - timedelta(days=stars.WINDOW_DAYS),
        )
        .group_by(Staff.id, Staff.staff_no, Staff.name, Insurer.name)
    )
    if insurer_id is not None:
        stmt = stmt.where(Staff.insurer_id == insurer_id)
    out = []
    for r in conn.execute(stmt):
        if int(r.rn) >= JUMP_MIN_RECENT and int(r.pn) >= JUMP_MIN_PRIOR:
            now_share, before = int(r.rtop) / int(r.rn), int(r.ptop) / int(r.pn)
            if now_share - before >= JUMP_POINTS:
                out.append(
                    {
                        "staff": r.name,
                        "staff_no": r.staff_no,
                        "insurer": r.insurer,
                        "recent": round(100 * now_share, 1),
                        "before": round(100 * before, 1),
                        "recent_n": int(r.rn),
                    }
                )
    return out
