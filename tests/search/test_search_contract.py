"""The search contract: the same tests against Meilisearch and the SQL fallback."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from portal.models import RatingText
from portal.search import SearchIndex, reindex
from tests.factories import approve_takedown
from tests.search.conftest import Add, Shop, find, ids, sync

TEXTS = RatingText.__table__


def test_two_character_chinese_terms_are_found(
    engine: Engine, index: SearchIndex, shop: Shop, add: Add
) -> None:
    fast = add("理赔很快，点赞", minutes_ago=4)
    slow = add("柜台人员态度差，理赔慢", minutes_ago=3)
    kind = add("柜台态度很好", minutes_ago=2)
    add("电话一直打不通", minutes_ago=1)
    sync(engine, index)
    assert set(ids(find(index, shop, "理赔"))) == {fast, slow}
    assert set(ids(find(index, shop, "态度"))) == {slow, kind}


def test_whitespace_separated_terms_must_all_match(
    engine: Engine, index: SearchIndex, shop: Shop, add: Add
) -> None:
    both = add("柜台人员态度差，理赔慢", minutes_ago=4)
    slow_only = add("理赔慢，等了一个月", minutes_ago=3)
    counter_only = add("柜台态度很好", minutes_ago=2)
    add("理赔很快，点赞", minutes_ago=1)
    sync(engine, index)
    assert set(ids(find(index, shop, "理赔 慢"))) == {both, slow_only}
    assert set(ids(find(index, shop, "柜台 态度"))) == {both, counter_only}
    assert set(ids(find(index, shop, "柜台\u3000态度 理赔"))) == {both}  # full-width space
    assert ids(find(index, shop, "一个月")) == [slow_only]  # 3 characters: the FTS5 path


def test_insurer_name_is_searchable(
    engine: Engine, index: SearchIndex, shop: Shop, add: Add
) -> None:
    rid = add("服务一般")
    sync(engine, index)
    assert ids(find(index, shop, f"公评样例{shop.code}")) == [rid]


def test_ratings_without_text_are_not_reviews(
    engine: Engine, index: SearchIndex, shop: Shop, add: Add
) -> None:
    add(text=None)
    with_text = add("理赔很快")
    sync(engine, index)
    result = find(index, shop)
    assert ids(result) == [with_text]
    assert result.total == 1


def _facet_world(add: Add, shop: Shop) -> dict[str, str]:
    return {
        "web5": add("网上投保方便", 4, stage="claim", channel="web", value=5),
        "counter": add("柜台态度很好", 3, stage="claim", channel="counter", scale=3, value=1,
                       branch=shop.branch_b, staff_no=None),
        "phone": add("电话等太久", 2, stage="issuance", channel="phone", value=2, verified=False),
        "nobranch": add("续保提醒及时", 1, stage="renewal", channel="web", value=3, branch=None,
                        staff_no=None),
    }  # fmt: skip


def test_facet_counts(engine: Engine, index: SearchIndex, shop: Shop, add: Add) -> None:
    _facet_world(add, shop)
    sync(engine, index)
    result = find(index, shop)
    assert result.total == 4
    assert result.facets == {
        "insurer": {shop.code: 4},
        "stage": {"claim": 2, "issuance": 1, "renewal": 1},
        "channel": {"counter": 1, "phone": 1, "web": 2},
        "stars": {"2": 1, "3": 1, "5": 2},
        "region": {"110100": 1, "430200": 2},
        "verified": {"false": 1, "true": 3},
    }
    assert find(index, shop, stage="claim").facets["channel"] == {"counter": 1, "web": 1}


def test_filters(engine: Engine, index: SearchIndex, shop: Shop, add: Add) -> None:
    r = _facet_world(add, shop)
    sync(engine, index)

    def got(**kw: object) -> set[str]:
        return set(ids(find(index, shop, **kw)))

    assert got(stars=5) == {r["web5"], r["counter"]}  # 3-level "satisfied" counts as 5 stars
    assert got(stage="claim", channel="counter") == {r["counter"]}
    assert got(region="110100") == {r["counter"]}
    assert got(province="430000") == {r["web5"], r["phone"]}
    assert got(verified=False) == {r["phone"]}
    assert got(stage="renewal", stars=3) == {r["nobranch"]}
    assert got(stage="claim", verified=False) == set()
    assert got(stars=1, stars_max=2) == {r["phone"]}  # the unhappy ones: a range
    assert got(stars=3, stars_max=5) == {r["web5"], r["counter"], r["nobranch"]}
    [doc] = find(index, shop, region="110100").hits
    assert (doc.branch_name, doc.province, doc.stars, doc.score) == ("北京分公司", "110000", 5, 100)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("newest", ["c", "b", "a"]),
        ("oldest", ["a", "b", "c"]),
        ("lowest", ["b", "c", "a"]),
        ("highest", ["a", "c", "b"]),
    ],
)
def test_sorting(
    engine: Engine, index: SearchIndex, shop: Shop, add: Add, sort: str, expected: list[str]
) -> None:
    made = {
        "a": add("理赔很快", minutes_ago=30, value=5),
        "b": add("理赔太慢", minutes_ago=20, value=1),
        "c": add("理赔一般", minutes_ago=10, value=3),
    }
    sync(engine, index)
    assert ids(find(index, shop, "理赔", sort=sort)) == [made[k] for k in expected]


def test_pagination(engine: Engine, index: SearchIndex, shop: Shop, add: Add) -> None:
    made = [add(f"第{i}条评价：理赔顺利", minutes_ago=10 - i) for i in range(5)]
    sync(engine, index)
    pages = [find(index, shop, page=p, per_page=2) for p in (1, 2, 3, 4)]
    assert [len(p.hits) for p in pages] == [2, 2, 1, 0]
    assert all(p.total == 5 for p in pages[:3])
    assert [h for p in pages for h in ids(p)] == made[::-1]  # newest first, no overlap


def _hide(engine: Engine, rating_id: str, reason: str = "abuse") -> None:
    """An approved takedown: it hides the text and asks for re-indexing."""
    approve_takedown(engine, rating_id, reason)


def test_hidden_text_disappears_after_drain(
    engine: Engine, index: SearchIndex, shop: Shop, add: Add
) -> None:
    keep = add("理赔很快", minutes_ago=2)
    hide = add("理赔员泄露了我的电话号码", minutes_ago=1)
    sync(engine, index)
    assert set(ids(find(index, shop, "理赔"))) == {keep, hide}
    _hide(engine, hide)
    assert sync(engine, index) >= 1
    result = find(index, shop, "理赔")
    assert ids(result) == [keep]
    assert result.facets["insurer"] == {shop.code: 1}
    assert hide not in index.ids()


def test_hidden_text_disappears_after_reindex(
    engine: Engine, index: SearchIndex, shop: Shop, add: Add
) -> None:
    keep = add("柜台态度很好", minutes_ago=2)
    hide = add("柜台某某态度恶劣", minutes_ago=1)
    sync(engine, index)
    _hide(engine, hide)  # the outbox is not drained: reindex alone must drop it
    assert reindex(engine, index) >= 1
    assert ids(find(index, shop, "态度")) == [keep]
    assert hide not in index.ids()


def test_personal_data_takedown_erases_the_text_from_the_index(
    engine: Engine, index: SearchIndex, shop: Shop, add: Add
) -> None:
    rid = add("理赔员张三很负责，家住幸福路12号")
    sync(engine, index)
    assert ids(find(index, shop, "幸福路")) == [rid]
    _hide(engine, rid, "personal_data")
    sync(engine, index)
    assert ids(find(index, shop, "幸福路")) == [] and rid not in index.ids()
    with engine.connect() as conn:
        body, redacted = conn.execute(
            select(TEXTS.c.body, TEXTS.c.redacted).where(TEXTS.c.rating_id == rid)
        ).one()
    assert (body, redacted) == ("", True)  # erased from the database, not only hidden


def test_reindex_rebuilds_a_lost_index(
    engine: Engine, index: SearchIndex, shop: Shop, add: Add, capsys: pytest.CaptureFixture[str]
) -> None:
    made = {add(f"第{i}次续保，服务周到", minutes_ago=i) for i in range(1, 4)}
    sync(engine, index)
    index.remove(sorted(made))  # the index lost them (a wiped Meilisearch, say)
    count = reindex(engine, index, progress=True)
    assert count >= 3
    assert set(ids(find(index, shop, "服务周到"))) == made
    assert "Indexing reviews" in capsys.readouterr().err
