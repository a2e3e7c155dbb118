"""The ranking engine against figures worked out by hand or published elsewhere.

Expected values are written out here (or computed with the standard library from the
raw scores), never with the engine's own helpers.
"""

from __future__ import annotations

import math
import statistics
from datetime import date

import pytest

from portal import rankings as rk
from portal.errors import Invalid
from portal.rankings import Entry, Method, Tally


def tally(scores: list[int]) -> Tally:
    """Rollup measures of raw 0-100 scores (top box 100, bottom box <= 25)."""
    return Tally.of(
        len(scores),
        sum(scores),
        sum(s * s for s in scores),
        sum(s == 100 for s in scores),
        sum(s <= 25 for s in scores),
    )


# Newcombe (1998), "Two-sided confidence intervals for the single proportion",
# Statistics in Medicine 17:857-872, table I, method 3 (Wilson score, no correction).
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("x", "n", "low", "high"), NEWCOMBE)
def test_wilson_interval_matches_published_values(x: int, n: int, low: float, high: float) -> None:
    got = rk.wilson_interval(x, n)
    assert got == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_satisfied_share_interval_is_wilson_in_percent() -> None:
    t = Tally.of(263, 0, 0, 81, 0)
    share, low, high = rk.share_interval(t.top, t)
    assert share == pytest.approx(100 * 81 / 263)
    assert (low, high) == (pytest.approx(25.53, abs=5e-3), pytest.approx(36.62, abs=5e-3))


def test_mean_interval_from_sums_equals_the_one_from_raw_scores() -> None:
    scores = [100, 50, 0, 75, 100, 25, 100, 50]
    mean, low, high = rk.mean_interval(tally(scores))
    half = 1.959963984540054 * statistics.stdev(scores) / math.sqrt(len(scores))
    assert mean == pytest.approx(statistics.mean(scores))
    assert low == pytest.approx(statistics.mean(scores) - half)
    assert high == pytest.approx(statistics.mean(scores) + half)
    assert rk.mean_interval(Tally()) is None
    assert rk.mean_interval(tally([75])) == (75, None, None)  # one rating: no interval


def test_no_zero_width_intervals() -> None:
    """One rating has no interval; every rating equal (zero variance) gets the Wilson
    interval of mean/100 on n, not a zero-width one."""
    assert rk.share_interval(1, tally([100])) == (100.0, None, None)
    mean, low, high = rk.mean_interval(tally([100] * 40))
    assert mean == 100 and high == 100 and 80 < low < 100
    low_w, _ = rk.wilson_interval(40, 40)
    assert low == pytest.approx(100 * low_w)
    mean, low, high = rk.mean_interval(tally([50] * 40))
    assert low < 50 < high


def test_bayesian_average_on_a_hand_sized_example() -> None:
    # A: 20 ratings averaging 90; B: 80 averaging 65. Industry mean 7000/100 = 70.
    a = Entry("A", "A", Tally.of(20, 1800, 0, 0, 0))
    b = Entry("B", "B", Tally.of(80, 5200, 0, 0, 0))
    ranking = rk.rank([a, b], Method(prior_weight=20, min_count=10))
    assert ranking.industry_mean == pytest.approx(70.0)
    got = {r.key: r.score for r in ranking.rows}
    assert got["A"] == pytest.approx((1800 + 20 * 70) / (20 + 20))  # 80.0
    assert got["B"] == pytest.approx((5200 + 20 * 70) / (80 + 20))  # 66.0
    assert got == {"A": pytest.approx(80.0), "B": pytest.approx(66.0)}
    # Without a prior the small insurer would simply lead with its raw 90.
    plain = rk.rank([a, b], Method(prior_weight=0, min_count=10))
    assert [r.score for r in plain.rows] == [pytest.approx(90.0), pytest.approx(65.0)]


def test_complaint_index_and_rate_per_10000_policies() -> None:
    # A: 30 of the 40 dissatisfied ratings with 100,000 of 400,000 policies.
    a = Entry("A", "A", Tally.of(100, 5000, 0, 10, 30), policies=100_000)
    b = Entry("B", "B", Tally.of(100, 6000, 0, 20, 10), policies=300_000)
    c = Entry("C", "C", Tally.of(100, 6000, 0, 20, 10))  # no report: no figure, not counted
    rows = {r.key: r for r in rk.rank([a, b, c], Method(min_count=1)).rows}
    assert rows["A"].index == pytest.approx((30 / 40) / (100_000 / 400_000))  # 3.00
    assert rows["B"].index == pytest.approx((10 / 40) / (300_000 / 400_000))  # 0.33
    assert rows["A"].per_10k == pytest.approx(3.0)
    assert rows["B"].per_10k == pytest.approx(10 * 10_000 / 300_000)
    assert rows["C"].index is None and rows["C"].per_10k is None


def test_equal_scores_share_a_rank_and_the_next_rank_skips() -> None:
    assert rk.competition_ranks([80.04, 80.0, 75.0, None, 90.0]) == [2, 2, 4, None, 1]
    assert rk.competition_ranks([70.0, 70.0, 70.0]) == [1, 1, 1]
    assert rk.competition_ranks([]) == []


def test_ties_through_the_whole_ranking() -> None:
    same = Tally.of(50, 4000, 0, 0, 0)
    entries = [Entry(k, k, same) for k in "XYZ"] + [Entry("W", "W", Tally.of(50, 2000, 0, 0, 0))]
    rows = rk.rank(entries, Method(min_count=1)).rows
    assert [(r.key, r.rank) for r in rows] == [("X", 1), ("Y", 1), ("Z", 1), ("W", 4)]


def test_minimum_count_lists_insurers_as_insufficient_data() -> None:
    few = Entry("FEW", "few", Tally.of(29, 29 * 100, 0, 29, 0))
    enough = Entry("OK", "ok", Tally.of(30, 30 * 60, 0, 0, 0))
    rows = {r.key: r for r in rk.rank([few, enough], Method(min_count=30)).rows}
    assert rows["FEW"].insufficient and rows["FEW"].rank is None and rows["FEW"].grade is None
    assert rows["FEW"].mean is not None  # its figures are still shown
    assert not rows["OK"].insufficient and rows["OK"].rank == 1


def test_rank_change_against_the_previous_period() -> None:
    entries = [
        Entry("A", "A", Tally.of(40, 3600, 0, 0, 0)),
        Entry("B", "B", Tally.of(40, 2400, 0, 0, 0)),
    ]
    rows = {r.key: r for r in rk.rank(entries, Method(min_count=1), {"A": 2, "B": 1}).rows}
    assert rows["A"].change == 1  # up from 2nd to 1st
    assert rows["B"].change == -1
    new = rk.rank(entries, Method(min_count=1), {}).rows
    assert all(r.change is None for r in new)


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (100, "AAA"),
        (95, "AAA"),
        (94.99, "AA"),
        (90, "AA"),
        (85, "A"),
        (80, "BBB"),
        (75, "BB"),
        (70, "B"),
        (65, "CCC"),
        (60, "CC"),
        (55, "C"),
        (54.99, "D"),
        (0, "D"),
    ],
)
def test_grade_bands(score: float, expected: str) -> None:
    assert rk.grade(score) == expected


def test_industry_medians_skip_insufficient_subjects() -> None:
    entries = [
        Entry("A", "A", Tally.of(40, 40 * 90, 0, 0, 0)),
        Entry("B", "B", Tally.of(40, 40 * 70, 0, 0, 0)),
        Entry("C", "C", Tally.of(40, 40 * 50, 0, 0, 0)),
        Entry("D", "D", Tally.of(5, 0, 0, 0, 5)),
    ]
    medians = rk.rank(entries, Method(min_count=10)).medians
    assert medians["mean"] == pytest.approx(70.0)
    assert medians["n"] == pytest.approx(40.0)


def test_recency_weight_halves_every_half_life() -> None:
    assert rk.recency_weight(0) == 1.0
    assert rk.recency_weight(182.5) == pytest.approx(0.5)
    assert rk.recency_weight(365, half_life_days=182.5) == pytest.approx(0.25)
    weighted = Tally.of(10, 800, 0, 0, 0, weight=0.5) + Tally.of(10, 600, 0, 0, 0)
    # 5 ratings' worth at 80 and 10 at 60: (400 + 600) / 15
    assert weighted.mean == pytest.approx(1000 / 15)
    assert weighted.effective_n == pytest.approx(15**2 / (10 * 0.25 + 10))


def test_channel_mix_shares() -> None:
    entry = Entry(
        "A",
        "A",
        Tally.of(40, 3000, 0, 0, 0),
        channels={"counter": Tally.of(30, 2400, 0, 0, 0), "web": Tally.of(10, 600, 0, 0, 0)},
    )
    mix = rk.rank([entry], Method(min_count=1)).rows[0].channel_mix
    assert mix == {"counter": {"share": 75.0, "mean": 80.0}, "web": {"share": 25.0, "mean": 60.0}}


def test_province_and_city_scopes_follow_region_codes() -> None:
    hunan = rk.parse_scope("province", "430200")  # 株洲 belongs to 湖南 430000
    assert hunan.region == "430000"
    assert hunan.contains("430200") and hunan.contains("430211") and hunan.contains("430100")
    assert not hunan.contains("440100") and not hunan.contains(None)
    zhuzhou = rk.parse_scope("city", "430211")
    assert zhuzhou.region == "430200"
    assert zhuzhou.contains("430211") and not zhuzhou.contains("430100")
    assert rk.parse_scope("national").contains(None)
    with pytest.raises(Invalid):
        rk.parse_scope("province", "99")
    with pytest.raises(Invalid):
        rk.parse_scope("galaxy", "430000")


def test_periods() -> None:
    q4 = rk.parse_period("quarter", "2026-Q4")
    assert (q4.start, q4.end, q4.label) == (date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
    assert rk.parse_period("quarter", "2026-Q1").previous() == rk.Period(
        "quarter", date(2025, 10, 1), date(2025, 12, 31)
    )
    march = rk.parse_period("month", "2026-03")
    assert march.previous() == rk.Period("month", date(2026, 2, 1), date(2026, 2, 28))
    year = rk.parse_period("year", "2024")
    assert (year.start, year.end, year.days) == (date(2024, 1, 1), date(2024, 12, 31), 366)
    custom = rk.parse_period("custom", "2026-01-10", "2026-01-19")
    assert custom.previous() == rk.Period("custom", date(2025, 12, 31), date(2026, 1, 9))
    assert rk.current_period("quarter", date(2026, 11, 22)).label == "2026-Q3"
    assert rk.current_period("month", date(2026, 1, 5)).label == "2025-12"


@pytest.mark.parametrize(
    ("kind", "value", "until"),
    [
        ("month", "2026-13", ""),
        ("month", "2026-1", ""),
        ("quarter", "2026-Q5", ""),
        ("year", "26", ""),
        ("custom", "2026-02-01", "2026-01-01"),
        ("custom", "2020-01-01", "2026-01-01"),
        ("custom", "yesterday", ""),
        ("week", "2026-01", ""),
    ],
)
def test_bad_periods_are_refused(kind: str, value: str, until: str) -> None:
    with pytest.raises(Invalid) as err:
        rk.parse_period(kind, value, until)
    assert err.value.code == "invalid_period"


def test_the_score_is_rounded_once_and_rank_grade_and_display_agree() -> None:
    """85.04 and 84.96 both show 85.0: they share a rank and a grade; 94.96 shows 95.0
    and is graded AAA (the documented "score as shown" rule)."""
    method = Method(prior_weight=0, min_count=1)
    entries = [
        Entry(k, k, Tally(n=100, total=total, w2=100))
        for k, total in (("a", 8504), ("b", 8496), ("c", 9496))
    ]
    rows = {r.key: r for r in rk.rank(entries, method).rows}
    assert [rows[k].score for k in "abc"] == [85.0, 85.0, 95.0]
    assert [rows[k].grade for k in "abc"] == ["A", "A", "AAA"]
    assert [rows[k].rank for k in "abc"] == [2, 2, 1]
    assert [rows[k].as_json()["score"] for k in "abc"] == [85.0, 85.0, 95.0]


@pytest.mark.parametrize(
    ("kind", "value", "until"),
    [("year", "0001", ""), ("year", "9999", ""), ("month", "1999-12", ""),
     ("quarter", "2028-Q1", ""), ("custom", "0001-01-01", "0001-01-31")],
)  # fmt: skip
def test_periods_are_limited_to_2000_through_next_year(kind: str, value: str, until: str) -> None:
    with pytest.raises(Invalid) as e:
        rk.parse_period(kind, value, until, today=date(2026, 11, 22))
    assert e.value.code == "invalid_period"
    assert rk.parse_period("year", "2027", today=date(2026, 11, 22)).previous().label == "2026"
    assert rk.parse_period("month", "2000-01", today=date(2026, 11, 22)).label == "2000-01"
