"""Review search (/reviews): query box, filters with facet counts, htmx fragments."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import Engine
from starlette.testclient import TestClient

from portal.search import SearchError, SqlIndex, drain
from tests.test_reviews import Seeded, seed

CODE = "PWR"
NAME = "星河公评搜索寿险"  # xinghe gongping sousuo shouxian
HX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def shop(engine: Engine) -> Seeded:
    seeded = seed(engine, CODE, NAME)
    while drain(engine, SqlIndex(engine)):  # terms of 3+ characters use FTS5 on SQLite
        pass
    return seeded


def soup_of(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def _ids(html: str) -> list[str]:
    return [str(a["id"]).removeprefix("review-") for a in soup_of(html).select("article.review")]


def _names(shop: Seeded, html: str) -> list[str]:
    names = {v: k for k, v in shop.ids.items()}
    return [names[i] for i in _ids(html) if i in names]


def test_chinese_multi_term_query_finds_reviews(client: TestClient, shop: Seeded) -> None:
    """Across all insurers the first page is the newest matches of the whole (shared)
    database, which other tests fill with reviews about slow claims too: the insurer
    facet, counted over every match, is what shows this insurer's review was found."""
    page = client.get("/reviews", params={"q": "理赔 慢"})
    assert page.status_code == 200
    insurers = soup_of(page.text).select("select#r-insurer option")
    found = {str(o["value"]): o.get_text() for o in insurers if o["value"]}
    assert found.get(CODE, "").endswith("(1)"), found  # slow_claim, not fast_claim
    assert "fast_claim" not in _names(shop, page.text)  # 理赔 but not 慢: every term must match
    mine = client.get("/reviews", params={"q": "理赔 慢", "insurer": CODE})
    assert _names(shop, mine.text) == ["slow_claim"]
    soup = soup_of(mine.text)
    assert soup.select_one("#review-q")["value"] == "理赔 慢"  # type: ignore[index]
    link = soup.select_one(f"#review-{shop.ids['slow_claim']} .review-insurer a")
    assert link is not None and link["href"] == f"/insurers/{CODE}"


def test_filters_narrow_and_show_facet_counts(client: TestClient, shop: Seeded) -> None:
    page = client.get("/reviews", params={"insurer": CODE, "lang": "en"})
    assert _names(shop, page.text) == [
        "slow_claim", "fast_claim", "xss", "counter_happy", "phone_basic", "older"
    ]  # fmt: skip  # the removed text is not searchable
    soup = soup_of(page.text)

    def option(name: str, value: str) -> str:
        tag = soup.select_one(f'select[name="{name}"] option[value="{value}"]')
        assert tag is not None
        return tag.get_text(strip=True)

    assert option("stage", "claim") == "Claim (4)"
    assert option("channel", "web") == "Web (4)"
    assert option("stars", "5") == "5 stars (2)"
    assert option("verified", "false") == "Unverified only (1)"
    assert option("region", "430000").endswith("(3)")
    assert option("insurer", CODE) == NAME  # filtered by insurer: no count
    assert soup.select_one(f'select[name="insurer"] option[value="{CODE}"][selected]')
    claim = client.get("/reviews", params={"insurer": CODE, "stage": "claim", "stars": "3"})
    assert _names(shop, claim.text) == ["phone_basic", "older"]
    web = client.get("/reviews", params={"insurer": CODE, "channel": "web", "region": "430000"})
    assert _names(shop, web.text) == ["slow_claim", "xss"]


def test_htmx_gets_the_results_only(client: TestClient, shop: Seeded) -> None:
    page = client.get("/reviews", params={"q": "理赔", "insurer": CODE}, headers=HX)
    assert page.status_code == 200 and "<html" not in page.text
    soup = soup_of(page.text)
    assert soup.select_one("#results") is not None
    assert soup.select_one("#review-q") is None  # the query box is never swapped
    assert set(_names(shop, page.text)) == {"slow_claim", "fast_claim", "older"}
    form_query = "q=理赔&insurer=&stage=claim&channel=&stars=&verified=&region=&sort="
    pushed = client.get(f"/reviews?{form_query}", headers=HX)
    assert pushed.headers["hx-push-url"] == "/reviews?q=%E7%90%86%E8%B5%94&stage=claim"
    explicit = client.get("/reviews?q=理赔&sort=relevance", headers=HX)
    assert explicit.headers["hx-push-url"] == "/reviews?q=%E7%90%86%E8%B5%94"


def test_the_form_works_without_javascript_and_pushes_urls(client: TestClient) -> None:
    soup = soup_of(client.get("/reviews").text)
    form = soup.select_one("form.review-search")
    assert form is not None and form["method"] == "get" and form["action"] == "/reviews"
    assert form["hx-push-url"] == "true" and form["hx-select"] == "#results"
    for field in form.select("input[name], select[name]"):
        assert soup.select_one(f'label[for="{field["id"]}"]') is not None, field["name"]
    assert all(s.get("src") for s in soup.find_all("script"))
    assert not soup.find_all("style") and not soup.select("[style]")


def test_insurer_names_match_by_pinyin(client: TestClient, shop: Seeded) -> None:
    soup = soup_of(client.get("/reviews", params={"q": "xinghe"}).text)
    chips = [a["href"] for a in soup.select(".matching a.chip")]
    assert f"/insurers/{CODE}" in chips


def test_removed_and_escaped_texts(client: TestClient, shop: Seeded) -> None:
    hidden = client.get("/reviews", params={"q": "推销", "insurer": CODE})
    assert _names(shop, hidden.text) == []  # a removed text cannot be found by its words
    page = client.get("/reviews", params={"q": "出单顺利", "insurer": CODE})
    assert _names(shop, page.text) == ["xss"]
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text


def test_bad_parameters_are_ignored_on_pages(client: TestClient, shop: Seeded) -> None:
    page = client.get("/reviews", params={"stars": "9", "stage": "x", "page": "-1", "insurer": "!"})
    assert page.status_code == 200 and _ids(page.text)


def test_search_outage_shows_a_message(
    client: TestClient, shop: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: SqlIndex, q: object) -> None:
        raise SearchError("down")

    monkeypatch.setattr(SqlIndex, "search", broken)
    page = client.get("/reviews", params={"q": "理赔", "lang": "en"})
    assert page.status_code == 200
    assert "Search is unavailable right now" in page.text and _ids(page.text) == []
