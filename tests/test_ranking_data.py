"""The ranking as read from rollups: scopes, policies in force, recency, branch/staff levels.
Expected figures are worked out here from the ratings the test writes."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import Engine

from portal import directory, policies_in_force, ranking_data, rankings
from portal.db import reading
from portal.ranking_data import Slice
from portal.ratings import record_batch
from tests.factories import CHINA, World, key, make_world, rating_in

Q3 = rankings.parse_period("quarter", "2023-Q3")  # only this module writes here


@pytest.fixture(scope="module")
def world(engine: Engine) -> World:
    w = make_world(engine)
    with reading(engine) as conn:
        if ranking_data.entries(conn, Slice(Q3), rankings.Method()):
            return w

    def batch(insurer: str, branch: str, staff: str, value: int, day: str, n: int) -> None:
        at = datetime.fromisoformat(f"{day}T09:30:00").replace(tzinfo=CHINA)
        record_batch(
            engine,
            [
                rating_in(w, insurer=insurer, branch=branch, staff_no=staff, value=value,
                          occurred_at=at, idempotency_key=key(), text=None, stage="renewal")
                for _ in range(n)
            ],
        )  # fmt: skip

    # A: 30 x 5 stars early in the quarter (07-01), 10 x 1 star at its end (09-30).
    batch(w.insurer_a, w.branch_a, w.teller_a, 5, "2023-07-01", 30)
    batch(w.insurer_a, w.branch_a, w.teller_a, 1, "2023-09-30", 10)
    # B: 40 x 3 stars in Changsha.
    batch(w.insurer_b, w.branch_b, w.teller_b, 3, "2023-08-15", 40)
    with engine.begin() as conn:
        reports = [
            policies_in_force.Report(w.insurer_a, date(2023, m, 1), p)
            for m, p in ((7, 90_000), (8, 100_000), (9, 110_000))
        ] + [policies_in_force.Report(w.insurer_b, date(2023, 8, 1), 300_000)]
        # TZ reports policies but has no ratings in the quarter: its policies still count
        # in the industry's total.
        directory.add_insurer(conn, "TZ", "丙测试保险")
        reports.append(policies_in_force.Report("TZ", date(2023, 9, 1), 100_000))
        policies_in_force.apply(conn, reports, "test")
    return w


def _build(engine: Engine, s: Slice) -> dict[str, rankings.Ranked]:
    with reading(engine) as conn:
        return {r.key: r for r in ranking_data.build(conn, s).rows}


def test_plain_quarter_with_policies_in_force(engine: Engine, world: World) -> None:
    rows = _build(engine, Slice(Q3))
    a, b = rows["TA"], rows["TB"]
    assert (a.n, b.n) == (40, 40)
    assert a.mean[0] == pytest.approx((30 * 100 + 10 * 0) / 40)  # 75
    assert b.mean[0] == pytest.approx(50)
    # A: 10 dissatisfied, average 100,000 policies; B: 0 dissatisfied, 300,000.
    assert a.per_10k == pytest.approx(10 * 10_000 / 100_000)
    # Every reporting insurer's policies count (TZ's too): 500,000 in all.
    assert a.index == pytest.approx((10 / 10) / (100_000 / 500_000))  # 5.0
    assert b.index == pytest.approx(0.0)
    prior = (3000 + 2000) / 80
    assert a.score == round((3000 + 50 * prior) / 90, 1)


@pytest.mark.parametrize(
    "s",
    [
        Slice(Q3, stage="renewal"),
        Slice(Q3, channel="web"),
        Slice(Q3, scope=rankings.parse_scope("province", "430000")),
        Slice(Q3, recency=True),
    ],
    ids=["stage", "channel", "province", "recency"],
)
def test_policy_figures_only_in_the_national_all_stage_all_channel_plain_view(
    engine: Engine, world: World, s: Slice
) -> None:
    """Policies in force are national and unweighted: dividing a province's, a stage's,
    a channel's or a weighted count by them would be a meaningless figure."""
    rows = _build(engine, s)
    assert rows and all(r.per_10k is None and r.index is None for r in rows.values())


def test_recency_view_weights_the_end_of_the_quarter(engine: Engine, world: World) -> None:
    rows = _build(engine, Slice(Q3, stage="renewal", recency=True))
    w_old = 0.5 ** ((date(2023, 9, 30) - date(2023, 7, 1)).days / 182.5)
    expected = (30 * w_old * 100) / (30 * w_old + 10)
    assert rows["TA"].mean[0] == pytest.approx(expected)
    assert rows["TA"].effective_n == pytest.approx((30 * w_old + 10) ** 2 / (30 * w_old**2 + 10))


def test_city_scope_and_branch_and_staff_levels(engine: Engine, world: World) -> None:
    zhuzhou = rankings.parse_scope("city", "430200")
    assert set(_build(engine, Slice(Q3, zhuzhou))) == {"TA"}
    with reading(engine) as conn:
        a = directory.insurer_id(conn, world.insurer_a)
        branches = ranking_data.build(conn, Slice(Q3, level="branch", insurer_id=a)).rows
        staff = ranking_data.build(conn, Slice(Q3, level="staff", insurer_id=a)).rows
    assert [(r.key, r.n) for r in branches] == [(world.branch_a, 40)]
    assert [(r.key, r.n) for r in staff] == [(world.teller_a, 40)]


def test_scores_read_rollups_never_the_ratings(engine: Engine, world: World) -> None:
    """design.md: rankings never scan raw ratings on a page view."""
    import re

    from sqlalchemy import event

    seen: list[str] = []

    def spy(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", spy)
    try:
        with reading(engine) as conn:
            s = Slice(Q3, rankings.parse_scope("province", "430000"), stage="renewal")
            ranking_data.entries(conn, s, rankings.Method(), Q3.previous())
            ranking_data.entries(conn, s, rankings.Method())
            ranking_data.trend(conn, s)
            a = directory.insurer_id(conn, world.insurer_a)
            ranking_data.build(conn, Slice(Q3, level="staff", insurer_id=a))
            ranking_data.build(conn, Slice(Q3, level="branch", insurer_id=a, recency=True))
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    assert seen
    raw = re.compile(r"\b(FROM|JOIN)\s+ratings\b", re.IGNORECASE)
    assert not [s for s in seen if raw.search(s)]


@pytest.mark.parametrize(
    "scope",
    [rankings.Scope(), rankings.parse_scope("province", "430000"),
     rankings.parse_scope("city", "430200"), rankings.parse_scope("province", "110000")],
)  # fmt: skip
def test_the_trend_in_one_query_equals_one_ranking_read_per_month(
    engine: Engine, world: World, scope: rankings.Scope
) -> None:
    s = Slice(Q3, scope, stage="renewal")
    periods = [rankings.month_period(date(2023, 1, 1), k) for k in range(12)]
    with reading(engine) as conn:
        each = [
            {e.key: (e.name, e.tally) for e in ranking_data.entries(conn, s, rankings.Method(), p)}
            for p in periods
        ]
        once = ranking_data._monthly_insurers(conn, s, periods)
        assert once == each
        assert any(each) == (scope.region[:2] != "11")  # none in Beijing
        trend = ranking_data.trend(conn, Slice(rankings.parse_period("month", "2023-12"), scope))
    assert trend["months"][0] == "2023-01"
