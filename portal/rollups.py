"""Rollups: the aggregates rankings read, kept up to date in each rating's transaction."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from portal.models import (
    Insurer,
    Rating,
    RollupDaily,
    RollupMonthly,
    RollupStaffDaily,
    RollupStaffMonthly,
)
from portal.prepared import Prepared

MEASURES = ("n", "sum_score", "sum_sq", "top", "bottom")
DAILY: Table = RollupDaily.__table__  # type: ignore[assignment]
STAFF: Table = RollupStaffDaily.__table__  # type: ignore[assignment]
MONTHLY: Table = RollupMonthly.__table__  # type: ignore[assignment]
STAFF_MONTHLY: Table = RollupStaffMonthly.__table__  # type: ignore[assignment]

Increments = dict[tuple[Any, ...], list[int]]


def _add_to(table: Increments, key: tuple[Any, ...], m: tuple[int, ...]) -> None:
    found = table.get(key)
    if found is None:
        table[key] = list(m)
    else:
        for i, v in enumerate(m):
            found[i] += v


def _increments(
    rows: Iterable[Mapping[str, Any]],
    day_of: Callable[[datetime], date],
) -> tuple[Increments, Increments]:
    daily: Increments = {}
    staff: Increments = {}
    for r in rows:
        day = day_of(r["occurred_at"])
        m = (1, r["score"], r["score"] ** 2, int(bool(r["top_box"])), int(bool(r["bottom_box"])))
        key = (
            day,
            r["insurer_id"],
            r["branch_id"] or 0,
            r["stage"],
            r["channel"],
            bool(r["verified"]),
        )
        _add_to(daily, key, m)
        if r["staff_id"] is not None:
            _add_to(staff, (day, r["staff_id"], r["stage"], r["channel"]), m)
    return daily, staff


def by_month(daily: Increments) -> Increments:
    """Daily increments (keys starting with the day) summed per month (its first day)."""
    monthly: Increments = {}
    for (day, *rest), m in daily.items():
        _add_to(monthly, (day.replace(day=1), *rest), tuple(m))
    return monthly


def upsert_add(
    conn: Connection,
    table: Table,
    keys: tuple[str, ...],
    measures: tuple[str, ...],
    values: list[dict[str, Any]],
) -> None:
    """Insert rollup rows, or add their measures to the rows already there (by `keys`).

    Inside a group-commit batch (portal/writer.py) the rows are added up in memory and
    written once per row when the batch ends, in its transaction (see Deferred)."""
    if not values:
        return
    deferred = conn.info.get(DEFERRED)
    if deferred is not None:
        deferred.add(table, keys, measures, values)
        return
    _upsert_statement(conn.dialect.name, table, keys, measures).executemany(conn, values)


@functools.cache
def _upsert_statement(
    dialect: str, table: Table, keys: tuple[str, ...], measures: tuple[str, ...]
) -> Prepared:
    """Built once per table: constructing `excluded` and its column collection anew
    cost ~1 ms per upsert, the largest part of a rating's CPU (docs/performance.md);
    run on the driver (portal/prepared.py)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    return Prepared(
        stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={m: table.c[m] + stmt.excluded[m] for m in measures},
        )
    )


DEFERRED = "portal.rollups.deferred"  # Connection.info key while a group-commit batch runs
_Target = tuple[Table, tuple[str, ...], tuple[str, ...]]  # table, key columns, measures


class Deferred:
    """The rollup increments of one group-commit batch, written when it ends.

    Concurrent ratings mostly add to the same few rollup rows (one per day, insurer,
    branch, stage and channel): each unit of a batch upserting them itself cost five
    statements per rating, about a fifth of the writer's time on SQLite. The writer
    puts one of these in `Connection.info` for the batch; `upsert_add` then adds here.
    Each unit's increments are staged apart and kept only when its savepoint is
    released (`keep`), dropped when it is rolled back (`drop`), so the rollups still
    count exactly the committed ratings; `flush` writes them before COMMIT, in the same
    transaction, in the lock order of the direct path (other tables first, then the
    rating rollups in `add`'s order, keys sorted)."""

    def __init__(self) -> None:
        self.kept: dict[_Target, dict[tuple[Any, ...], dict[str, Any]]] = {}
        self.unit: dict[_Target, dict[tuple[Any, ...], dict[str, Any]]] = {}

    def add(
        self,
        table: Table,
        keys: tuple[str, ...],
        measures: tuple[str, ...],
        values: Iterable[Mapping[str, Any]],
    ) -> None:
        rows = self.unit.setdefault((table, keys, measures), {})
        for v in values:
            _merge(rows, tuple(v[k] for k in keys), v, measures)

    def keep(self) -> None:
        for target, rows in self.unit.items():
            kept = self.kept.setdefault(target, {})
            for key, v in rows.items():
                _merge(kept, key, v, target[2])
        self.unit.clear()

    def drop(self) -> None:
        self.unit.clear()

    def flush(self, conn: Connection) -> None:
        assert not self.unit, "a unit's increments were neither kept nor dropped"
        for table, keys, measures in sorted(self.kept, key=_lock_rank):
            rows = self.kept[(table, keys, measures)]
            values = [rows[k] for k in sorted(rows)]
            _upsert_statement(conn.dialect.name, table, keys, measures).executemany(conn, values)
        self.kept.clear()


def _merge(
    rows: dict[tuple[Any, ...], dict[str, Any]],
    key: tuple[Any, ...],
    v: Mapping[str, Any],
    measures: tuple[str, ...],
) -> None:
    found = rows.get(key)
    if found is None:
        rows[key] = dict(v)  # a copy: the caller's row is not changed
    else:
        for m in measures:
            found[m] += v[m]


def _lock_rank(target: _Target) -> tuple[int, str]:
    """Other rollups (the counter's completion) first, as a unit writes them before it
    calls `add`; then `add`'s tables in its order."""
    table = target[0]
    return (_ADD_ORDER.index(table) + 1 if table in _ADD_ORDER else 0, table.name)


def _upsert(
    conn: Connection,
    table: Table,
    keys: tuple[str, ...],
    increments: Increments,
) -> None:
    values = [
        dict(zip(keys, k, strict=True)) | dict(zip(MEASURES, m, strict=True))
        for k, m in sorted(increments.items())
    ]  # sorted: a fixed lock order, no deadlocks
    upsert_add(conn, table, keys, MEASURES, values)


DAILY_KEYS = ("day", "insurer_id", "branch_id", "stage", "channel", "verified")
STAFF_KEYS = ("day", "staff_id", "stage", "channel")
MONTHLY_KEYS = ("month", *DAILY_KEYS[1:])
STAFF_MONTHLY_KEYS = ("month", *STAFF_KEYS[1:])


_ADD_ORDER = (DAILY, STAFF, MONTHLY, STAFF_MONTHLY)


def add(
    conn: Connection, rows: Iterable[Mapping[str, Any]], day_of: Callable[[datetime], date]
) -> None:
    """Add ratings to every rollup (daily and monthly; all, and per staff member)."""
    daily, staff = _increments(rows, day_of)
    # Always in this table order (and sorted keys within each): a fixed lock order.
    _upsert(conn, DAILY, DAILY_KEYS, daily)
    _upsert(conn, STAFF, STAFF_KEYS, staff)
    _upsert(conn, MONTHLY, MONTHLY_KEYS, by_month(daily))
    _upsert(conn, STAFF_MONTHLY, STAFF_MONTHLY_KEYS, by_month(staff))


def rebuild(conn: Connection, day_of: Callable[[datetime], date], batch: int = 50_000) -> int:
    """Recompute every rollup from the ratings themselves. Returns the ratings read."""
    for table in (DAILY, STAFF, MONTHLY, STAFF_MONTHLY):
        conn.execute(delete(table))
    cols = [
        Rating.occurred_at,
        Rating.insurer_id,
        Rating.branch_id,
        Rating.staff_id,
        Rating.stage,
        Rating.channel,
        Rating.verified,
        Rating.score,
        Rating.top_box,
        Rating.bottom_box,
    ]
    # On the statement, not the connection: Connection.execution_options() changes the
    # connection itself, and psycopg refuses the rollup upserts on a streaming cursor.
    result = conn.execute(select(*cols).execution_options(yield_per=batch))
    total = 0
    for part in result.mappings().partitions():
        add(conn, part, day_of)
        total += len(part)
    return total


def totals(
    conn: Connection,
    insurer_id: int | None = None,
    verified_only: bool = False,
) -> dict[str, Any]:
    """Headline figures (all insurers, or one), read from rollups only. All-time sums:
    for all insurers the monthly rollup gives the same with a month's days in one row;
    one insurer's are read through the daily rollup's insurer index."""
    t = (MONTHLY if insurer_id is None else DAILY).c
    stmt = select(
        t.stage,
        t.channel,
        func.sum(t.n),
        func.sum(t.sum_score),
        func.sum(t.top),
        func.sum(t.bottom),
    ).group_by(t.stage, t.channel)
    if insurer_id is not None:
        stmt = stmt.where(t.insurer_id == insurer_id)
    if verified_only:
        stmt = stmt.where(t.verified)
    rows = conn.execute(stmt).all()
    by_channel: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    by_stage: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for stage, channel, n, total, top, bottom in rows:
        for bucket in (by_channel[channel], by_stage[stage]):
            for i, v in enumerate((n, total, top, bottom)):
                bucket[i] += int(v or 0)
    n = sum(v[0] for v in by_channel.values())
    return {
        "ratings": n,
        "insurers": conn.execute(select(func.count()).select_from(Insurer)).scalar_one(),
        "mean": round(sum(v[1] for v in by_channel.values()) / n, 1) if n else None,
        "channels": {k: _summary(v) for k, v in by_channel.items()},
        "stages": {k: _summary(v) for k, v in by_stage.items()},
    }


def by_insurer(
    conn: Connection,
    stage: str | None = None,
    channel: str | None = None,
) -> list[dict[str, Any]]:
    """Every insurer's verified totals, best mean first (an overview, not the ranking);
    all-time sums, added up per insurer from the monthly rollup, then joined."""
    c = MONTHLY.c
    sums = select(
        c.insurer_id,
        func.sum(c.n).label("n"),
        func.sum(c.sum_score).label("total"),
        func.sum(c.top).label("top"),
        func.sum(c.bottom).label("bottom"),
    ).where(c.verified)
    if stage:
        sums = sums.where(c.stage == stage)
    if channel:
        sums = sums.where(c.channel == channel)
    per = sums.group_by(c.insurer_id).subquery()
    stmt = (
        select(Insurer.code, Insurer.name, per.c.n, per.c.total, per.c.top, per.c.bottom)
        .select_from(Insurer)
        .outerjoin(per, per.c.insurer_id == Insurer.id)
    )
    out = [
        {
            "code": code,
            "name": name,
            **_summary([int(n or 0), int(t or 0), int(top or 0), int(b or 0)]),
        }
        for code, name, n, t, top, b in conn.execute(stmt)
    ]
    return sorted(out, key=lambda r: (r["mean"] is None, -(r["mean"] or 0), r["code"]))


def _summary(v: list[int]) -> dict[str, Any]:
    n, total, top, bottom = v
    return {
        "n": n,
        "mean": round(total / n, 1) if n else None,
        "top_share": round(100 * top / n, 1) if n else None,
        "bottom_share": round(100 * bottom / n, 1) if n else None,
    }
