"""Published reviews and insurer figures: the queries behind the public pages.

The session database is shared, so each module seeds its own insurer (`seed`) and
filters by it. Web and API tests import `seed` to get the same well-known ratings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from portal import directory, insurer_stats, replies, reviews
from portal.errors import BadRequest, NotFound
from portal.insurer_stats import Measures, star_counts
from portal.models import Rating
from portal.ratings import RatingIn, day_of, record_batch
from portal.reviews import ReviewFilter
from portal.search import SqlIndex
from portal.search.base import stars_of
from portal.workdays import working_days_between
from tests.factories import CHINA, approve_takedown, key, moderation_user

NOW = datetime.now(CHINA)
XSS = "<script>alert('x')</script><img src=x onerror=alert(1)> 出单顺利"
PHONE_TEXT = "续保时客服打我手机13800138000推销，不要再打了"
# (name, channel, stage, scale, value, verified, branch, days ago, text)
RATINGS: list[tuple[Any, ...]] = [
    ("slow_claim", "web", "claim", 5, 1, True, "B1", 1, "理赔太慢了，等了两个月"),
    ("fast_claim", "web", "claim", 5, 5, True, "B2", 2, "理赔很快，服务好\n第二行"),
    ("xss", "web", "issuance", 5, 4, False, "B1", 3, XSS),
    ("counter_happy", "counter", "renewal", 3, 1, True, "B1", 4, "柜面服务热情"),
    ("phone_basic", "phone", "claim", 3, 2, True, "B2", 5, "电话回访态度一般"),
    ("removed", "web", "renewal", 5, 2, True, "B1", 6, PHONE_TEXT),
    ("counter_bad", "counter", "claim", 3, 3, True, "B1", 7, None),
    ("older", "web", "claim", 5, 3, True, None, 40, "理赔一般，客服还行"),
    ("phone_five", "phone", "issuance", 5, 4, True, "B2", 70, None),
]
CODE = "PRV"


@dataclass
class Seeded:
    code: str
    name: str
    insurer_id: int
    ids: dict[str, str] = field(default_factory=dict)

    def written(self) -> list[str]:
        """Names of the seeded ratings that have a text, newest first."""
        return [r[0] for r in RATINGS if r[8] is not None]


def _rating(code: str, row: tuple[Any, ...]) -> RatingIn:
    _, channel, stage, scale, value, verified, branch, days, text = row
    return RatingIn(
        insurer=code,
        stage=stage,
        channel=channel,
        scale=scale,
        value=value,
        occurred_at=NOW - timedelta(days=days, minutes=1),
        source="test-public",
        idempotency_key=key(),
        branch=f"{code}-{branch}" if branch else None,
        text=text,
        verified=verified,
    )


def seed(engine: Engine, code: str, name: str) -> Seeded:
    """An insurer with branches in Hunan (B1) and Jiangsu (B2) and the RATINGS above;
    the "removed" text is hidden as an approved takedown would."""
    with engine.begin() as conn:
        iid = directory.add_insurer(conn, code, name)
        directory.add_branch(conn, code, f"{code}-B1", f"{name}株洲中支", "430200")
        directory.add_branch(conn, code, f"{code}-B2", f"{name}苏州中支", "320500")
    receipts = record_batch(engine, [_rating(code, row) for row in RATINGS])
    s = Seeded(code, name, iid, {row[0]: r.id for row, r in zip(RATINGS, receipts, strict=True)})
    approve_takedown(engine, s.ids["removed"], reason="spam")
    return s


@pytest.fixture(scope="module")
def shop(engine: Engine) -> Seeded:
    return seed(engine, CODE, "鹏程公评测试财险")


def _page(engine: Engine, shop: Seeded, **kw: Any) -> reviews.ReviewPage:
    with engine.connect() as conn:
        return reviews.list_reviews(conn, ReviewFilter(**kw), shop.insurer_id)


def _names(shop: Seeded, page: reviews.ReviewPage) -> list[str]:
    by_id = {v: k for k, v in shop.ids.items()}
    return [by_id[r.id] for r in page.items]


# -- star distribution from rollups ----------------------------------------------------


def test_star_counts_solve_the_rollup_measures_exactly() -> None:
    counts = {5: 7, 4: 3, 3: 0, 2: 2, 1: 4}
    scores = [25 * (s - 1) for s, n in counts.items() for _ in range(n)]
    m = Measures(
        n=len(scores),
        total=sum(scores),
        sq=sum(x * x for x in scores),
        top=counts[5],
        bottom=counts[1] + counts[2],
    )
    assert star_counts(m) == counts
    assert star_counts(Measures()) == {5: 0, 4: 0, 3: 0, 2: 0, 1: 0}
    assert star_counts(Measures(n=1, total=30, sq=900)) is None  # not a 25-point score
    assert star_counts(Measures(n=1, total=100, sq=10000, top=0)) is None  # inconsistent


def _raw_stars(conn: Connection, insurer_id: int, column: Any, value: str) -> dict[int, int]:
    rows = conn.execute(
        select(Rating.scale, Rating.value).where(
            Rating.insurer_id == insurer_id, Rating.verified, column == value
        )
    )
    out = dict.fromkeys((5, 4, 3, 2, 1), 0)
    for scale, v in rows:
        out[stars_of(scale, v)] += 1
    return out


def test_profile_distribution_matches_the_raw_ratings(engine: Engine, shop: Seeded) -> None:
    with engine.connect() as conn:
        p = insurer_stats.profile(conn, shop.code, NOW.date(), reviews.count_reviews)
        for group, column, keys in (
            ("stages", Rating.stage, ("issuance", "renewal", "claim")),
            ("channels", Rating.channel, ("counter", "phone", "web")),
        ):
            for k in keys:
                assert p.distribution(group, k) == _raw_stars(conn, shop.insurer_id, column, k)
    assert p.ratings == len(RATINGS)
    assert p.verified.n == len(RATINGS) - 1  # the XSS one is unverified
    claim = p.stages["claim"]  # slow 0, fast 100, basic 50, counter_bad 0, older 50
    assert (claim.n, claim.mean) == (5, 40.0)


def test_profile_of_an_unknown_insurer_is_not_found(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(NotFound):
        insurer_stats.profile(conn, "NOSUCHCODE", NOW.date())


def test_trend_has_twelve_months_from_the_rollups(engine: Engine, shop: Seeded) -> None:
    assert insurer_stats.month_starts(datetime(2026, 2, 10).date())[0].isoformat() == "2025-03-01"
    with engine.connect() as conn:
        points = insurer_stats.trend(conn, shop.insurer_id, NOW.date())
    assert len(points) == 12 and points[-1].month.month == NOW.month
    by_month: dict[str, list[int]] = {}
    for row in RATINGS:
        if row[5]:
            d = day_of(NOW - timedelta(days=row[7], minutes=1))
            score = 25 * (row[4] - 1) if row[3] == 5 else {1: 100, 2: 50, 3: 0}[row[4]]
            by_month.setdefault(d.strftime("%Y-%m"), []).append(score)
    for p in points:
        scores = by_month.get(p.month.strftime("%Y-%m"), [])
        assert p.n == len(scores)
        assert p.mean == (round(sum(scores) / len(scores), 1) if scores else None)


def test_reply_rate_median_working_days_and_changes(engine: Engine, shop: Seeded) -> None:
    with engine.connect() as conn:
        none = insurer_stats.reply_stats(conn, shop.insurer_id, reviews.count_reviews)
    assert (none.replied, none.rate, none.median_days, none.change_share) == (0, None, None, None)
    other = seed(engine, "PRVREPLY", "回复测试财险")
    with engine.begin() as conn:
        user = moderation_user(conn, "insurer", "PRVREPLY")
        recorded = dict(conn.execute(select(Rating.id, Rating.recorded_at)).all())
        for name, days, change in (("slow_claim", 3, None), ("fast_claim", 0, "理赔提速")):
            rid = other.ids[name]
            replies.post(
                conn, insurer_id=other.insurer_id, user_id=user, rating_id=rid,
                body="感谢反馈", change_made=change, now=recorded[rid] + timedelta(days=days),
            )  # fmt: skip
        stats = insurer_stats.reply_stats(conn, other.insurer_id, reviews.count_reviews)
        both = [other.insurer_id, shop.insurer_id]  # the ranking's batch gives the same
        many = insurer_stats.reply_stats_many(conn, both, reviews.count_reviews_by_insurer)
        assert many == {other.insurer_id: stats, shop.insurer_id: none}
    written = len(other.written())
    assert stats.replied == 2 and stats.rate == round(100 * 2 / written, 1)
    assert stats.changes == 1 and stats.change_share == 50.0
    slow = working_days_between(
        day_of(recorded[other.ids["slow_claim"]]),
        day_of(recorded[other.ids["slow_claim"]] + timedelta(days=3)),
    )
    assert stats.median_days == slow / 2  # the fast one was answered the same day


# -- the review list -------------------------------------------------------------------


def test_reviews_are_texts_newest_first_with_removed_ones_kept(
    engine: Engine, shop: Seeded
) -> None:
    page = _page(engine, shop)
    assert _names(shop, page) == shop.written()
    assert page.total == len(shop.written()) and not page.capped
    removed = next(r for r in page.items if r.id == shop.ids["removed"])
    assert removed.removed and removed.text is None
    assert (removed.stars, removed.score, removed.stage) == (2, 25, "renewal")
    fast = next(r for r in page.items if r.id == shop.ids["fast_claim"])
    assert fast.text == "理赔很快，服务好\n第二行" and fast.province_name == "江苏省"


def test_three_level_ratings_map_to_stars_like_search(engine: Engine, shop: Seeded) -> None:
    page = _page(engine, shop)
    happy = next(r for r in page.items if r.id == shop.ids["counter_happy"])
    basic = next(r for r in page.items if r.id == shop.ids["phone_basic"])
    assert (happy.stars, happy.level) == (5, "satisfied")
    assert (basic.stars, basic.level) == (3, "basic")
    assert _names(shop, _page(engine, shop, stars=5)) == ["fast_claim", "counter_happy"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"stage": "claim"}, ["slow_claim", "fast_claim", "phone_basic", "older"]),
        ({"channel": "counter"}, ["counter_happy"]),
        ({"stars": 1}, ["slow_claim"]),
        ({"verified": False}, ["xss"]),
        ({"region": "320000"}, ["fast_claim", "phone_basic"]),
        ({"stage": "claim", "channel": "web", "region": "430000"}, ["slow_claim"]),
    ],
)
def test_filters_narrow_the_list(
    engine: Engine, shop: Seeded, filters: dict[str, Any], expected: list[str]
) -> None:
    assert _names(shop, _page(engine, shop, **filters)) == expected


def test_sorts_and_pages(engine: Engine, shop: Seeded) -> None:
    lowest = _names(shop, _page(engine, shop, sort="lowest"))
    assert lowest[0] == "slow_claim" and lowest[-1] in ("fast_claim", "counter_happy")
    assert _names(shop, _page(engine, shop, sort="oldest"))[0] == "older"
    first = _page(engine, shop, per_page=3)
    second = _page(engine, shop, per_page=3, page=2)
    assert first.pages == 3 and first.has_next
    assert _names(shop, first) + _names(shop, second) == shop.written()[:6]
    assert _page(engine, shop, per_page=3, page=9).items == []


def test_texts_are_shown_masked(engine: Engine, shop: Seeded) -> None:
    assert reviews.mask_text("请回电13912345678") == "请回电139****5678"


def test_search_hits_become_masked_reviews_with_province_facets(
    engine: Engine, shop: Seeded
) -> None:
    page = reviews.search_reviews(SqlIndex(engine), ReviewFilter(q="理赔 慢", insurer=CODE))
    assert [r.id for r in page.items] == [shop.ids["slow_claim"]]
    assert page.facets and page.facets["province"] == {"430000": 1}
    everything = reviews.search_reviews(SqlIndex(engine), ReviewFilter(insurer=CODE))
    assert shop.ids["removed"] not in {r.id for r in everything.items}  # not a document
    counter = next(r for r in everything.items if r.channel == "counter")
    assert counter.level == "satisfied"


# -- parameters ------------------------------------------------------------------------


def test_filter_parsing_is_strict_for_the_api_and_lenient_for_pages() -> None:
    params = {"stage": "claim", "stars": "5", "verified": "true", "region": "43", "page": "2"}
    f = ReviewFilter.parse(params, strict=True)
    assert (f.stage, f.stars, f.verified, f.region, f.page) == ("claim", "5", True, "430000", 2)
    assert ReviewFilter.parse(dict(f.params()), strict=True) == f  # the URL round-trips
    assert f.query_string(page=1) == "?stage=claim&stars=5&verified=true&region=430000"
    for name, bad in [("stage", "x"), ("stars", "6"), ("page", "0"), ("region", "99"),
                      ("verified", "maybe"), ("per_page", "101"), ("insurer", "a b")]:  # fmt: skip
        with pytest.raises(BadRequest) as caught:
            ReviewFilter.parse({name: bad}, strict=True)
        assert caught.value.field == name
        assert ReviewFilter.parse({name: bad}, strict=False) == ReviewFilter()
    assert ReviewFilter(q="理赔").effective_sort == "relevance"
    assert ReviewFilter(sort="relevance").effective_sort == "newest"


def test_page_numbers_keep_the_ends_and_a_window() -> None:
    assert reviews.page_numbers(1, 1) == [1]
    assert reviews.page_numbers(6, 20) == [1, None, 4, 5, 6, 7, 8, None, 20]
    assert reviews.page_numbers(2, 4) == [1, 2, 3, 4]


# -- the directory ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["pengcheng", "PengCheng", "pcgpcs", "gongping", "鹏程", "公评测试", "prv", " peng cheng "],
)
def test_insurer_search_by_chinese_name_or_pinyin(query: str) -> None:
    assert insurer_stats.name_matches(CODE, "鹏程公评测试财险", query)


@pytest.mark.parametrize("query", ["huaxing", "hxsf", "华兴", "pengchenx"])
def test_insurer_search_misses(query: str) -> None:
    assert not insurer_stats.name_matches(CODE, "鹏程公评测试财险", query)


def test_pinyin_is_cached_and_reads_phrases() -> None:
    insurer_stats.pinyin_keys.cache_clear()
    assert insurer_stats.pinyin_keys("中国银行保险") == ("zhongguoyinhangbaoxian", "zgyhbx")
    insurer_stats.pinyin_keys("中国银行保险")
    assert insurer_stats.pinyin_keys.cache_info().hits == 1


def test_directory_scores_and_sorts(engine: Engine, shop: Seeded) -> None:
    with engine.connect() as conn:
        rows = insurer_stats.directory(conn, "鹏程公评")
        assert [r.code for r in rows] == [CODE]
        row = rows[0]
        assert row.ratings == len(RATINGS) and row.verified.n == len(RATINGS) - 1
        assert row.stages["claim"].mean == 40.0
        by_name = insurer_stats.directory(conn, sort="name", descending=False)
        by_count = insurer_stats.directory(conn, sort="count")
    keys = [insurer_stats.pinyin_keys(r.name)[0] for r in by_name]
    assert keys == sorted(keys)
    counts = [r.verified.n for r in by_count if r.verified.n]
    assert counts == sorted(counts, reverse=True)
    assert all(not r.verified.n for r in by_count[len(counts) :])  # unrated last
    json = row.as_json()
    assert json["ratings"] == {"total": len(RATINGS), "verified": len(RATINGS) - 1}
    assert set(json["stages"]) == {"issuance", "renewal", "claim"}


@pytest.mark.parametrize(
    ("raw", "parsed"), [("4", "4"), ("1-2", "1-2"), ("3-3", "3"), ("4-5", "4-5")]
)
def test_star_filters_take_a_value_or_a_range(raw: str, parsed: str) -> None:
    from portal.reviews import ReviewFilter

    assert ReviewFilter.parse({"stars": raw}, strict=True).stars == parsed


@pytest.mark.parametrize("raw", ["0", "6", "2-1", "1-6", "a-b", "1-2-3"])
def test_bad_star_filters_are_refused(raw: str) -> None:
    from portal.errors import BadRequest
    from portal.reviews import ReviewFilter

    with pytest.raises(BadRequest):
        ReviewFilter.parse({"stars": raw}, strict=True)
