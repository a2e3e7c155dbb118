"""Design invariant: the rollups kept in each rating's transaction equal the rollups
recomputed from the ratings, after a randomized workload through the real write path."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from portal import directory, rollups
from portal.config import Settings
from portal.db import make_engine
from portal.errors import Invalid
from portal.ratings import SCALES, RatingIn, day_of, record, record_batch
from tests.factories import CHINA, make_world

TOTAL = 10_000
SINGLE = 500  # of them one record() call each; the rest in batches (same code path)


TABLES = (rollups.DAILY, rollups.STAFF, rollups.MONTHLY, rollups.STAFF_MONTHLY)


def _dump(engine: Engine) -> list[list[Any]]:
    """Every rollup table's rows, sorted: daily, staff daily, monthly, staff monthly."""
    with engine.connect() as conn:
        return [sorted(tuple(r) for r in conn.execute(select(t))) for t in TABLES]


def _subjects(engine: Engine) -> list[tuple[str, str | None, str | None]]:
    """(insurer, branch, staff_no) choices: with and without branch or staff."""
    w = make_world(engine)
    with engine.begin() as conn:
        directory.add_branch(conn, w.insurer_a, "TA-GZ01", "甲测试财险广州分公司", "440100")
        directory.import_staff(
            conn,
            [
                directory.StaffRow(w.insurer_a, "TA-GZ01", "GZ0001", "赵一", "agent"),
                directory.StaffRow(w.insurer_b, None, "HQ0001", "钱二", "call_agent"),
            ],
        )
    return [
        (w.insurer_a, w.branch_a, w.teller_a),
        (w.insurer_a, w.branch_a, None),
        (w.insurer_a, "TA-GZ01", "GZ0001"),
        (w.insurer_a, None, "GZ0001"),  # the staff member's branch is used
        (w.insurer_a, None, None),
        (w.insurer_b, w.branch_b, w.teller_b),
        (w.insurer_b, None, "HQ0001"),
        (w.insurer_b, w.branch_b, None),
    ]


def _random_rating(rng: random.Random, subjects: list[Any], i: int, now: datetime) -> RatingIn:
    insurer, branch, staff_no = rng.choice(subjects)
    channel = rng.choice(("counter", "phone", "web"))
    scale = rng.choice(SCALES[channel])
    # Many times near China-time midnight: the day a rating counts for must match.
    base = now - timedelta(days=rng.randrange(0, 400))
    midnight = base.astimezone(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
    occurred = midnight + timedelta(seconds=rng.randrange(-120, 120)) if i % 3 == 0 else base
    return RatingIn(
        insurer=insurer,
        stage=rng.choice(("issuance", "renewal", "claim")),
        channel=channel,
        scale=scale,
        value=rng.randint(1, scale),
        occurred_at=min(occurred, now - timedelta(seconds=1)),
        source=f"test:{rng.randrange(3)}",
        idempotency_key=f"rebuild-{i}",
        branch=branch,
        staff_no=staff_no,
        text=None,
        verified=rng.random() < 0.8,
    )


def test_maintained_rollups_equal_rebuilt_ones(scratch_settings: Settings) -> None:
    owner = make_engine(scratch_settings.database_url)
    app = make_engine(scratch_settings.runtime_database_url)
    try:
        rng = random.Random(20261122)
        subjects = _subjects(app)
        now = datetime.now(UTC)
        made = [_random_rating(rng, subjects, i, now) for i in range(TOTAL)]
        for r in made[:SINGLE]:
            record(app, r)
        rest = made[SINGLE:]
        for start in range(0, len(rest), 250):
            record_batch(app, rest[start : start + 250])
        # Replays of stored ratings count once; a batch with one bad rating stores nothing.
        record_batch(app, rng.sample(made, 200))
        bad = [_random_rating(rng, subjects, TOTAL + k, now) for k in range(20)]
        bad[-1] = RatingIn(**{**bad[-1].__dict__, "value": 9})
        with pytest.raises(Invalid):
            record_batch(app, bad)
        maintained = _dump(app)
        assert sum(row[6] for row in maintained[0]) == TOTAL  # n over all daily rows
        assert sum(row[6] for row in maintained[2]) == TOTAL  # and all monthly rows
        assert len(maintained[2]) < len(maintained[0])  # months do sum several days
        assert all(row[0].day == 1 for table in maintained[2:] for row in table)

        with app.connect() as conn:  # the overviews read the monthly rollup
            assert rollups.totals(conn)["ratings"] == TOTAL
            verified = sum(1 for r in made if r.verified)
            assert sum(row["n"] for row in rollups.by_insurer(conn)) == verified

        with owner.begin() as conn:
            assert rollups.rebuild(conn, day_of) == TOTAL
        assert _dump(app) == maintained
    finally:
        app.dispose()
        owner.dispose()


def test_migration_0009_fills_monthly_rollups_from_daily(scratch_settings: Settings) -> None:
    """A database that had ratings before the monthly rollups existed gets them filled
    by its migration with what a rebuild from the ratings gives."""
    from alembic import command

    from portal.db import alembic_config

    owner = make_engine(scratch_settings.database_url)
    app = make_engine(scratch_settings.runtime_database_url)
    try:
        rng = random.Random(8)
        subjects = _subjects(app)
        now = datetime.now(UTC)
        record_batch(app, [_random_rating(rng, subjects, i, now) for i in range(1500)])
        with owner.begin() as conn:
            rollups.rebuild(conn, day_of)
        rebuilt = _dump(owner)
        cfg = alembic_config(scratch_settings.database_url)
        command.downgrade(cfg, "0008")
        command.upgrade(cfg, "head")
        assert _dump(owner) == rebuilt
        assert sum(row[6] for row in rebuilt[2]) == 1500
    finally:
        app.dispose()
        owner.dispose()
