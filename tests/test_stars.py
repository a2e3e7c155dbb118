"""Service star levels (服务星级): the Wilson rule, its thresholds, and the rollup read."""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import Engine, select

from portal import directory
from portal.models import Staff
from portal.ratings import CHINA, RatingIn, day_of, record_batch
from portal.stars import (
    MIN_RATINGS,
    THRESHOLDS,
    WINDOW_DAYS,
    StarLevel,
    china_today,
    staff_stars,
    stars_for,
    stars_from_bound,
    wilson_lower_bound,
)
from tests.factories import World, key, make_world, rating_in

Z = 1.959963984540054


def hand_wilson(s: int, n: int, z: float = Z) -> float:
    """The Wilson lower bound multiplied through by n, so it is not the module's own form:
    (s + z²/2 - z·sqrt(s(n-s)/n + z²/4)) / (n + z²)."""
    return (s + z * z / 2 - z * math.sqrt(s * (n - s) / n + z * z / 4)) / (n + z * z)


# --- wilson_lower_bound ---------------------------------------------------------------


@pytest.mark.parametrize(("s", "n"), [(1, 1), (3, 3), (5, 10), (34, 40), (190, 200), (7, 1000)])
def test_wilson_matches_the_formula(s: int, n: int) -> None:
    assert wilson_lower_bound(s, n) == pytest.approx(hand_wilson(s, n), rel=1e-12)


def test_wilson_honours_z() -> None:
    assert wilson_lower_bound(8, 10, z=1.0) == pytest.approx(hand_wilson(8, 10, 1.0), rel=1e-12)
    assert wilson_lower_bound(8, 10, z=1.0) > wilson_lower_bound(8, 10)  # wider at 95%


@pytest.mark.parametrize(
    ("s", "n", "published"),
    [(81, 263, 0.2553), (15, 148, 0.0624), (0, 20, 0.0), (1, 29, 0.0061)],
)
def test_wilson_matches_newcombe_1998(s: int, n: int, published: float) -> None:
    # Newcombe, Stat. Med. 17:857 (1998), table II, score method without continuity
    # correction: an independent check that the formula itself is the right one.
    assert round(wilson_lower_bound(s, n), 4) == published


@pytest.mark.parametrize("n", [1, 2, 20, 1000])
def test_wilson_at_the_edges(n: int) -> None:
    # 0 of n: exactly 0 (the formula's two terms cancel); n of n: n / (n + z²) < 1.
    assert wilson_lower_bound(0, n) == 0.0
    assert wilson_lower_bound(n, n) == pytest.approx(n / (n + Z * Z), rel=1e-12)
    assert wilson_lower_bound(n, n) < 1.0


@pytest.mark.parametrize(
    ("s", "n", "z"),
    [(0, 0, Z), (1, 0, Z), (-1, 5, Z), (6, 5, Z), (1, -1, Z), (1, 2, 0.0), (1, 2, math.nan)],
)
def test_wilson_rejects_bad_input(s: int, n: int, z: float) -> None:
    with pytest.raises(ValueError):
        wilson_lower_bound(s, n, z)


# --- stars_for ---------------------------------------------------------------------------


def test_evidence_beats_a_small_perfect_record() -> None:
    """The reason for the rule: 3/3 must not outrank 190/200."""
    assert wilson_lower_bound(3, 3) < wilson_lower_bound(190, 200)
    assert stars_for(3, 3).stars is None and stars_for(190, 200).stars == 5
    # Even past the "new" limit a perfect 20/20 ranks below 190/200.
    assert stars_for(20, 20).stars == 4


@pytest.mark.parametrize(
    ("s", "n", "stars"),
    # The examples in docs/star-levels.md, so the page and the code agree.
    [(190, 200, 5), (40, 40, 5), (95, 100, 4), (20, 20, 4), (34, 40, 3), (60, 100, 2)]
    + [(45, 100, 1), (0, 20, 1), (19, 19, None), (0, 0, None)],
)
def test_documented_examples(s: int, n: int, stars: int | None) -> None:
    assert stars_for(s, n).stars == stars


@pytest.mark.parametrize("n", [MIN_RATINGS, 37, 100, 200])
def test_more_satisfied_never_lowers_stars(n: int) -> None:
    levels = [stars_for(s, n) for s in range(n + 1)]
    for worse, better in zip(levels, levels[1:], strict=False):
        assert worse.stars is not None and better.stars is not None
        assert better.stars >= worse.stars
        assert better.lower_bound is not None and worse.lower_bound is not None
        assert better.lower_bound > worse.lower_bound


@pytest.mark.parametrize(("threshold", "stars"), THRESHOLDS)
def test_threshold_is_inclusive(threshold: float, stars: int) -> None:
    assert stars_from_bound(threshold) == stars
    assert stars_from_bound(math.nextafter(threshold, 0.0)) == stars - 1


def test_bounds_map_to_stars() -> None:
    assert [stars_from_bound(b) for b in (0.0, 0.49, 0.5, 0.7, 0.85, 0.95, 1.0)] == [
        1,
        1,
        2,
        3,
        4,
        5,
        5,
    ]


@pytest.mark.parametrize(("threshold", "stars"), THRESHOLDS)
@pytest.mark.parametrize("n", [50, 100, 200])
def test_counts_at_each_threshold(threshold: float, stars: int, n: int) -> None:
    """With n fixed, the fewest satisfied that reach a threshold (found by the hand
    formula) earn its stars, and one fewer earns one star less."""
    s = min(s for s in range(n + 1) if hand_wilson(s, n) >= threshold)
    assert stars_for(s, n).stars == stars
    assert stars_for(s - 1, n).stars == stars - 1


def test_new_below_min_ratings() -> None:
    for n in range(1, MIN_RATINGS):
        level = stars_for(n, n)
        assert level.is_new and level.stars is None
        assert level.lower_bound == pytest.approx(hand_wilson(n, n))  # still shown
    assert not stars_for(MIN_RATINGS, MIN_RATINGS).is_new
    assert stars_for(0, 0) == StarLevel(stars=None, n=0, satisfied=0, lower_bound=None)
    assert stars_for(0, 0).is_new


@pytest.mark.parametrize(("s", "n"), [(-1, 5), (6, 5), (0, -1), (1, 0)])
def test_stars_for_rejects_bad_counts(s: int, n: int) -> None:
    with pytest.raises(ValueError):
        stars_for(s, n)


# --- staff_stars: reads the rollup --------------------------------------------------------


@pytest.fixture(scope="module")
def world(engine: Engine) -> World:
    return make_world(engine)


def _new_teller(engine: Engine, world: World) -> tuple[str, int]:
    staff_no = f"ST{uuid.uuid4().hex[:10]}"
    row = directory.StaffRow(world.insurer_a, world.branch_a, staff_no, "星级测试", "teller")
    with engine.begin() as conn:
        directory.import_staff(conn, [row])
        sid = conn.execute(select(Staff.id).where(Staff.staff_no == staff_no)).scalar_one()
    return staff_no, int(sid)


def _at(day: date) -> datetime:
    return datetime.combine(day, time(12, 0), tzinfo=CHINA)  # noon: safely inside that day


def _seed(engine: Engine, world: World, staff_no: str, today: date) -> None:
    """40 counter ratings in the window (34 satisfied, 4 basic, 2 dissatisfied) across all
    stages, the oldest on the window's first day; and ratings that must not count."""
    values = [1] * 34 + [2] * 4 + [3] * 2
    days = [*range(1, 40), WINDOW_DAYS - 1]  # today - 89 is the window's first day
    stages = ("issuance", "renewal", "claim")
    ratings = [
        _counter(world, staff_no, today - timedelta(days=d), v, stages[i % 3])
        for i, (d, v) in enumerate(zip(days, values, strict=True))
    ]
    # Too old: on the day just outside the window, and well before it.
    ratings += [_counter(world, staff_no, today - timedelta(days=d), 1) for d in (90, 91, 200)]
    # Other channels rate other things (a phone call, a web journey): never counted.
    ratings += [
        rating_in(world, staff_no=staff_no, value=5, occurred_at=_at(today - timedelta(days=2)))
        for _ in range(5)
    ]
    ratings += [
        rating_in(
            world,
            staff_no=staff_no,
            channel="phone",
            scale=3,
            value=3,
            source="client:test",
            occurred_at=_at(today - timedelta(days=3)),
        )
        for _ in range(5)
    ]
    record_batch(engine, ratings)


def _counter(world: World, staff_no: str, day: date, value: int, stage: str = "claim") -> RatingIn:
    return rating_in(
        world,
        stage=stage,
        channel="counter",
        scale=3,
        value=value,
        source="device:test",
        idempotency_key=key(),
        branch=world.branch_a,
        staff_no=staff_no,
        text=None,
        occurred_at=_at(day),
    )


def test_staff_stars_reads_counter_ratings_in_the_window(engine: Engine, world: World) -> None:
    staff_no, sid = _new_teller(engine, world)
    _, unrated = _new_teller(engine, world)
    today = day_of(datetime.now(UTC))
    _seed(engine, world, staff_no, today)
    with engine.connect() as conn:
        levels = staff_stars(conn, [sid, unrated, sid], today)
        by_default = staff_stars(conn, [sid], None)
    assert set(levels) == {sid, unrated}
    level = levels[sid]
    # 34 of 40: p = 0.85, lower bound ~0.709 -> 3 stars (0.65 <= lb < 0.80).
    expected = hand_wilson(34, 40)
    assert 0.65 <= expected < 0.80
    assert replace(level, lower_bound=None) == StarLevel(3, 40, 34, None)
    assert level.lower_bound == pytest.approx(expected, rel=1e-12)
    assert levels[unrated] == stars_for(0, 0)
    assert by_default[sid].n == 40 and china_today() == today  # (fails only at midnight)


def test_staff_stars_as_of_an_earlier_day(engine: Engine, world: World) -> None:
    """`today` moves the whole window: 30 days ago it covered days 30..119 back."""
    staff_no, sid = _new_teller(engine, world)
    today = day_of(datetime.now(UTC))
    _seed(engine, world, staff_no, today)
    with engine.connect() as conn:
        level = staff_stars(conn, [sid], today - timedelta(days=30))[sid]
    # In (today - 120, today - 30]: the counter ratings 30..39 days back (5 satisfied,
    # 4 basic, 1 dissatisfied), the dissatisfied one 89 back, and the satisfied ones 90
    # and 91 back; not the one 200 back. 13 ratings, 7 satisfied.
    assert (level.n, level.satisfied) == (13, 7)
    assert level.lower_bound == pytest.approx(hand_wilson(7, 13), rel=1e-12)
    assert level.is_new


def test_staff_stars_of_nobody_runs_no_query(engine: Engine) -> None:
    with engine.connect() as conn:
        assert staff_stars(conn, []) == {}
