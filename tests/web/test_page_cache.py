"""The insurer page is served from cached HTML (portal/page_cache.py), yet every write
that changes what it shows is on the very next request, in every worker.

Each test first asks the page and its reviews fragment twice (the second answer comes
from the cache, which the test checks), then writes the way the portal does, then asks
again through the HTTP app.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import Engine, func, select, text, update
from starlette.testclient import TestClient

from portal import directory, replies
from portal.config import Settings
from portal.models import Insurer, InsurerPage
from portal.page_cache import SLOTS, LoopVersions, PageCache, page_version
from portal.ratings import RatingIn, record_batch, record_many
from portal.web.app import create_app
from portal.web.security import ANON_CSRF_COOKIE
from tests.factories import approve_takedown, key, moderation_user
from tests.test_reviews import NOW, Seeded, seed
from tests.web.conftest import BASE, csrf_of, login, text_of

CODE = "PGC"
NAME = "缓存公评测试财险"
PATH = f"/insurers/{CODE}"
HX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def shop(engine: Engine) -> Seeded:
    return seed(engine, CODE, NAME)


def _cache(client: TestClient) -> PageCache:
    return client.app_state["portal"].page_cache  # type: ignore[no-any-return]


def _review(engine: Engine, body: str | None, **kw: object) -> str:
    rating = RatingIn(
        insurer=CODE,
        stage="claim",
        channel="web",
        scale=5,
        value=4,
        occurred_at=NOW - timedelta(minutes=1),
        source="test-page-cache",
        idempotency_key=key(),
        branch=f"{CODE}-B1",
        text=body,
        verified=True,
        **kw,  # type: ignore[arg-type]
    )
    return record_batch(engine, [rating])[0].id


def _warm(client: TestClient) -> tuple[str, str]:
    """Page and fragment, each asked twice: the second time from the cache."""
    cache = _cache(client)
    page, fragment = client.get(PATH), client.get(PATH, headers=HX)
    hits = cache.hits
    assert text_of(client.get(PATH).text) == text_of(page.text)
    assert client.get(PATH, headers=HX).text == fragment.text
    assert cache.hits == hits + 2, "the page was not served from the cache"
    return page.text, fragment.text


def _both(client: TestClient) -> tuple[str, str]:
    page, fragment = client.get(PATH), client.get(PATH, headers=HX)
    assert page.status_code == fragment.status_code == 200
    return text_of(page.text), text_of(fragment.text)


def _insurer_user(engine: Engine) -> tuple[int, int]:
    with engine.begin() as conn:
        iid = conn.execute(select(Insurer.id).where(Insurer.code == CODE)).scalar_one()
        return iid, moderation_user(conn, "insurer", CODE)


def _reply(engine: Engine, rating_id: str, body: str) -> None:
    iid, user = _insurer_user(engine)
    with engine.begin() as conn:
        replies.post(conn, insurer_id=iid, user_id=user, rating_id=rating_id, body=body)


# -- each kind of write shows on the next request --------------------------------------


def test_a_new_review_shows_at_once(client: TestClient, engine: Engine, shop: Seeded) -> None:
    _warm(client)
    _review(engine, "缓存之后的新评价：理赔员很耐心")
    page, fragment = _both(client)
    assert "缓存之后的新评价：理赔员很耐心" in page
    assert "缓存之后的新评价：理赔员很耐心" in fragment


def test_a_new_rating_without_text_changes_the_figures(
    client: TestClient, engine: Engine, shop: Seeded
) -> None:
    def verified_count(html: str) -> str:
        soup = BeautifulSoup(html, "html.parser")
        return soup.select(".insurer-stats .stat")[1].get_text(" ", strip=True)

    before = verified_count(_warm(client)[0])
    _review(engine, None)
    assert verified_count(client.get(PATH).text) != before


def test_a_reply_its_edit_and_the_follow_up_show_at_once(
    client: TestClient, engine: Engine, shop: Seeded
) -> None:
    rid = _review(engine, "等回复的评价")
    _warm(client)
    _reply(engine, rid, "感谢反馈，已安排专人跟进")
    assert all("感谢反馈，已安排专人跟进" in part for part in _both(client))

    _warm(client)
    _reply(engine, rid, "更正：已于次日办结")
    page, fragment = _both(client)
    assert "更正：已于次日办结" in fragment and "感谢反馈，已安排专人跟进" not in fragment
    assert "更正：已于次日办结" in page

    _warm(client)
    with engine.begin() as conn:
        replies.follow_up(conn, rating_id=rid, body="确实已经办好了，谢谢")
    assert all("确实已经办好了，谢谢" in part for part in _both(client))


@pytest.mark.parametrize("reason", ["abuse", "personal_data"])
def test_a_takedown_or_erasure_hides_the_text_at_once(
    client: TestClient, engine: Engine, shop: Seeded, reason: str
) -> None:
    body = f"将被撤下的评价 {reason}"
    rid = _review(engine, body)
    page, fragment = _warm(client)
    assert body in page and body in fragment
    approve_takedown(engine, rid, reason=reason)
    page, fragment = _both(client)
    assert body not in page and body not in fragment
    notice = BeautifulSoup(client.get(PATH, headers=HX).text, "html.parser").select_one(
        f"#review-{rid} [data-testid=removed-notice]"
    )
    assert notice is not None


def test_a_new_branch_region_shows_in_the_filter(
    client: TestClient, engine: Engine, shop: Seeded
) -> None:
    def regions() -> list[str]:
        soup = BeautifulSoup(client.get(PATH).text, "html.parser")
        return [o["value"] for o in soup.select("#f-region option")]  # type: ignore[misc]

    _warm(client)
    assert "110000" not in regions()
    with engine.begin() as conn:
        directory.add_branch(conn, CODE, f"{CODE}-BJ", f"{NAME}北京分公司", "110100")
    assert "110000" in regions()


def test_a_change_by_plain_sql_shows_too(
    client: TestClient, owner_engine: Engine, shop: Seeded
) -> None:
    """The triggers, not the app, bump the version: an operator's SQL counts as well."""
    _warm(client)
    with owner_engine.begin() as conn:
        conn.execute(update(Insurer).where(Insurer.code == CODE).values(name=NAME + "（更名）"))
    try:
        page, _ = _both(client)
        assert NAME + "（更名）" in page
    finally:
        with owner_engine.begin() as conn:
            conn.execute(update(Insurer).where(Insurer.code == CODE).values(name=NAME))


@pytest.fixture
def second_worker(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings), base_url=BASE) as c:
        yield c


def test_every_worker_sees_a_write_made_through_another(
    client: TestClient, second_worker: TestClient, engine: Engine, shop: Seeded
) -> None:
    """Two app instances, as two uvicorn workers: each has its own cache."""
    _warm(client)
    _warm(second_worker)
    _review(engine, "另一个进程写入的评价")
    for worker in (client, second_worker):
        assert all("另一个进程写入的评价" in part for part in _both(worker))


# -- what is shared and what is not ----------------------------------------------------


def test_the_shell_is_rendered_per_visitor(client: TestClient, users: object, shop: Seeded) -> None:
    """The header (who is logged in) and the CSRF token are never taken from the cache."""
    _warm(client)
    login(client, "ins-a")
    mine = client.get(PATH).text
    assert "ins-a" in text_of(mine)
    client.cookies.clear()
    theirs = client.get(PATH).text
    assert "ins-a" not in text_of(theirs)
    assert csrf_of(theirs) != csrf_of(mine)
    assert client.cookies.get(ANON_CSRF_COOKIE) == csrf_of(theirs)  # the visitor's own


def test_each_language_and_filter_has_its_own_entry(client: TestClient, shop: Seeded) -> None:
    _warm(client)
    english = client.get(PATH, params={"lang": "en"}).text
    assert "Reviews" in text_of(english) and 'lang="en"' in english
    assert "评价" in text_of(client.get(PATH).text)
    claims = client.get(PATH, params={"stage": "claim"}, headers=HX).text
    assert "续保" not in text_of(claims)  # no renewal review in the claim filter


def test_kept_review_count_matches_a_count_of_the_texts(engine: Engine, shop: Seeded) -> None:
    _review(engine, "再写一条")
    _review(engine, None)
    with engine.connect() as conn:
        kept = conn.execute(
            select(func.sum(InsurerPage.reviews)).where(InsurerPage.insurer_id == shop.insurer_id)
        ).scalar_one()
        scanned = conn.execute(
            text(
                "SELECT count(*) FROM ratings r JOIN rating_texts t ON t.rating_id = r.id "
                "WHERE r.insurer_id = :iid"
            ),
            {"iid": shop.insurer_id},
        ).scalar_one()
    assert kept == scanned


# -- the cache itself ------------------------------------------------------------------


def test_a_stale_version_misses_and_is_replaced() -> None:
    cache = PageCache(1000)
    cache.put("k", 1, {"b": "old"})
    assert cache.get("k", 1) == {"b": "old"}
    assert cache.get("k", 2) is None
    cache.put("k", 2, {"b": "new"})
    assert cache.get("k", 1) is None and cache.get("k", 2) == {"b": "new"}
    assert len(cache) == 1


def test_the_cache_keeps_to_its_byte_budget_least_recently_used_first() -> None:
    cache = PageCache(10)
    fill: Callable[[str], None] = lambda k: cache.put(k, 1, {"b": "x" * 4})  # noqa: E731
    fill("a")
    fill("b")
    assert cache.get("a", 1) is not None  # a is now the most recent
    fill("c")  # 12 bytes > 10: b goes
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) is not None and cache.get("c", 1) is not None
    cache.put("huge", 1, {"b": "x" * 11})  # larger than the budget: not kept
    assert cache.get("huge", 1) is None and len(cache) == 2


@pytest.mark.postgres_only
def test_concurrent_ratings_of_one_insurer_do_not_queue_on_one_version_row(
    engine: Engine, shop: Seeded
) -> None:
    """Two open transactions rating the same insurer (other rollup rows) both bump its
    page version without waiting for each other: each bumps its own slot row. With one
    row per insurer the second would wait for the first's COMMIT (lock_timeout here)."""

    def rating(stage: str) -> RatingIn:
        return RatingIn(
            insurer=CODE, stage=stage, channel="web", scale=5, value=3,
            occurred_at=NOW - timedelta(minutes=1), source="test-page-slots",
            idempotency_key=key(), branch=f"{CODE}-B1", verified=True,
        )  # fmt: skip

    def version() -> int:
        with engine.connect() as conn:
            return page_version(conn, CODE).version

    before = version()
    with engine.connect() as first, engine.connect() as second:
        first.begin()
        slot = first.execute(text("SELECT txid_current() % :n"), {"n": SLOTS}).scalar_one()
        record_many(first, [rating("claim")])
        for _ in range(100):  # a transaction id of another slot (they are consecutive)
            second.begin()
            if second.execute(text("SELECT txid_current() % :n"), {"n": SLOTS}).scalar() != slot:
                break
            second.rollback()
        second.execute(text("SET LOCAL lock_timeout = '3s'"))
        record_many(second, [rating("renewal")])  # raises if it waits for `first`
        second.commit()
        first.commit()
    assert version() >= before + 2


def test_the_migration_and_the_cache_agree_on_the_slots() -> None:
    from importlib import import_module

    migration = import_module("portal.migrations.versions.0008_insurer_pages")
    assert migration.SLOTS == SLOTS


# -- the version read on the event loop (SQLite) -----------------------------------------


def _versions(client: TestClient) -> LoopVersions:
    versions = client.app_state["portal"].versions
    assert versions is not None, "SQLite: the page versions are read on the event loop"
    return versions  # type: ignore[no-any-return]


@pytest.mark.sqlite_only
def test_while_nothing_is_committed_the_version_is_not_read_again(
    client: TestClient, shop: Seeded
) -> None:
    _warm(client)
    versions = _versions(client)
    queries = versions.queries
    for _ in range(3):
        _both(client)
    assert versions.queries == queries  # PRAGMA data_version said: nothing changed


@pytest.mark.sqlite_only
def test_a_commit_by_another_connection_is_noticed_on_the_loop(
    client: TestClient, owner_engine: Engine, shop: Seeded
) -> None:
    """A write made outside this process's pool (here a plain sqlite3 connection, as the
    CLI or the other worker would be) is seen by the very next request."""
    _warm(client)
    versions = _versions(client)
    before = versions.get(CODE)
    assert before is not None
    with sqlite3.connect(owner_engine.url.database) as other:
        other.execute(
            "UPDATE insurers SET name = ? WHERE code = ?", (NAME + "（外部）", CODE)
        )  # the insurers trigger bumps the page's version in the same transaction
    try:
        after = versions.get(CODE)
        assert after is not None and after.version > before.version
        assert NAME + "（外部）" in _both(client)[0]
    finally:
        with owner_engine.begin() as conn:
            conn.execute(update(Insurer).where(Insurer.code == CODE).values(name=NAME))


@pytest.mark.sqlite_only
def test_when_sqlite_cannot_answer_the_page_is_read_through_the_threadpool(
    client: TestClient, shop: Seeded, tmp_path: Path
) -> None:
    """The loop never waits in SQLite's busy handler (timeout 0) and never fails a page
    for its own connection's sake: any SQLite error there (here the file cannot be
    opened; in production a busy database) makes the request read as before."""
    _warm(client)
    versions = _versions(client)
    path = versions.path
    versions.close()
    versions.path = str(tmp_path)  # a directory: "unable to open database file"
    try:
        assert versions.get(CODE) is None
        _review(client.app_state["portal"].engine, "库忙时写入的评价")
        assert all("库忙时写入的评价" in part for part in _both(client))
    finally:
        versions.path = path
    assert versions.get(CODE) is not None


def test_an_unknown_insurer_is_a_404_on_either_path(client: TestClient) -> None:
    assert client.get("/insurers/NOPE9").status_code == 404
    assert client.get("/insurers/NOPE9", headers=HX).status_code == 404
