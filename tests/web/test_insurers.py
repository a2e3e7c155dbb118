"""The insurer directory (/insurers) and an insurer's page (/insurers/{code})."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from bs4 import BeautifulSoup, Tag
from sqlalchemy import Engine
from starlette.testclient import TestClient

from portal import directory
from portal.ratings import RatingIn, record_batch
from tests.factories import key
from tests.test_reviews import NOW, RATINGS, XSS, Seeded, seed
from tests.web.conftest import text_of

CODE = "PWI"
NAME = "远航公评网页财险"  # yuanhang gongping wangye caixian: initials yhgpwycx
HX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def shop(engine: Engine) -> Seeded:
    return seed(engine, CODE, NAME)


def soup_of(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def _no_inline_script_or_style(soup: BeautifulSoup) -> None:
    assert all(s.get("src") for s in soup.find_all("script"))
    assert not soup.find_all("style") and not soup.select("[style]")
    assert not [a for tag in soup.find_all(True) for a in tag.attrs if a.startswith("on")]


def _row(soup: BeautifulSoup, code: str) -> Tag | None:
    link = soup.select_one(f'#directory a[href="/insurers/{code}"]')
    return link.find_parent("tr") if link else None


# -- the directory ---------------------------------------------------------------------


def test_directory_lists_scores_and_counts(client: TestClient, shop: Seeded) -> None:
    page = client.get("/insurers")
    assert page.status_code == 200
    soup = soup_of(page.text)
    row = _row(soup, CODE)
    assert row is not None
    cells = [td.get_text(" ", strip=True) for td in row.find_all("td")]
    # verified: 8 ratings, mean of 0,100,100,50,25,0,50,75 = 50; claim 40, renewal 62.5
    assert cells[:2] == ["50.0", "8"]
    assert cells[2:] == ["75.0", "62.5", "40.0"]
    _no_inline_script_or_style(soup)
    assert soup.select_one('link[href="/static/css/public.css"]') is not None


@pytest.mark.parametrize("q", ["yuanhang", "YuanHang", "yhgpwy", "gongpingwangye", "远航", "pwi"])
def test_directory_search_by_name_pinyin_or_initials(
    client: TestClient, shop: Seeded, q: str
) -> None:
    soup = soup_of(client.get("/insurers", params={"q": q}).text)
    assert _row(soup, CODE) is not None
    assert soup.select_one("#insurer-q")["value"] == q  # type: ignore[index]


def test_directory_search_without_match(client: TestClient, shop: Seeded) -> None:
    soup = soup_of(client.get("/insurers", params={"q": "zzzqqq"}).text)
    assert _row(soup, CODE) is None
    assert "zzzqqq" in soup.select_one("#directory tbody").get_text()  # type: ignore[union-attr]


def test_directory_htmx_gets_the_table_only(client: TestClient, shop: Seeded) -> None:
    page = client.get("/insurers", params={"q": "yuanhang"}, headers=HX)
    assert page.status_code == 200 and "<html" not in page.text
    soup = soup_of(page.text)
    assert soup.select_one("#directory") is not None and _row(soup, CODE) is not None
    assert soup.select_one("form") is None and page.headers["vary"] == "HX-Request"
    pushed = client.get("/insurers?q=yuanhang&sort=score&dir=desc", headers=HX)
    assert pushed.headers["hx-push-url"] == "/insurers?q=yuanhang"  # defaults left out


def test_directory_sorts_by_name_score_and_count(client: TestClient, shop: Seeded) -> None:
    def order(**params: str) -> list[str]:
        soup = soup_of(client.get("/insurers", params=params).text)
        return [a["href"] for a in soup.select("#directory tbody th a")]  # type: ignore[misc]

    by_name = order(sort="name")
    assert by_name == order(sort="name", dir="asc") == order(sort="name", dir="desc")[::-1]
    assert order() == order(sort="score", dir="desc")
    soup = soup_of(client.get("/insurers", params={"sort": "count", "dir": "asc"}).text)
    head = soup.select_one('th[aria-sort="ascending"] a')
    assert head is not None and head["href"] == "/insurers?sort=count"  # flips to the default
    assert client.get("/insurers", params={"sort": "bogus", "dir": "x"}).status_code == 200


# -- one insurer -----------------------------------------------------------------------


def test_insurer_page_headline_distribution_and_trend(client: TestClient, shop: Seeded) -> None:
    page = client.get(f"/insurers/{CODE}")
    assert page.status_code == 200
    soup = soup_of(page.text)
    assert soup.h1 and soup.h1.get_text(strip=True) == NAME
    values = [v.get_text(strip=True) for v in soup.select(".stats .stat-value")]
    assert values[:2] == ["50.0", "8"]
    assert "No replies yet" in text_of(client.get(f"/insurers/{CODE}?lang=en").text)
    dist = soup.select("table.distribution")
    assert len(dist) == 2
    counter_cells = [
        tr.find_all("td")[0].get_text(" ", strip=True) for tr in dist[1].tbody.find_all("tr")
    ]  # type: ignore[union-attr]
    assert counter_cells[0].startswith("1 ")  # one satisfied counter rating (5 stars)
    assert counter_cells[4].startswith("1 ")  # one dissatisfied (1 star)
    _no_inline_script_or_style(soup)


def test_trend_chart_is_accessible_svg_with_a_table(client: TestClient, shop: Seeded) -> None:
    soup = soup_of(client.get(f"/insurers/{CODE}").text)
    svg = soup.select_one("svg.trend-chart")
    assert svg is not None and svg["role"] == "img"
    assert svg.title is not None and svg.find("desc") is not None
    assert svg["aria-labelledby"] == "trend-title trend-desc"
    assert len(svg.select("circle.point")) >= 2 and svg.select_one("path.line") is not None
    rows = soup.select("details.trend-table tbody tr")
    assert len(rows) == 12
    assert sum(int(r.find_all("td")[0].get_text(strip=True)) for r in rows) >= 7


def test_unknown_insurer_is_404_and_codes_are_case_insensitive(
    client: TestClient, shop: Seeded
) -> None:
    assert client.get("/insurers/NOPE123").status_code == 404
    assert client.get(f"/insurers/{CODE.lower()}").status_code == 200


def _review_ids(html: str) -> list[str]:
    return [a["id"].removeprefix("review-") for a in soup_of(html).select("article.review")]  # type: ignore[union-attr]


def test_reviews_newest_first_and_filters_change_the_list(client: TestClient, shop: Seeded) -> None:
    names = {v: k for k, v in shop.ids.items()}
    everything = _review_ids(client.get(f"/insurers/{CODE}").text)
    assert [names[i] for i in everything] == shop.written()
    claim = _review_ids(client.get(f"/insurers/{CODE}", params={"stage": "claim"}).text)
    assert [names[i] for i in claim] == ["slow_claim", "fast_claim", "phone_basic", "older"]
    params = {"channel": "web", "stars": "1", "verified": "true", "region": "430000"}
    assert [names[i] for i in _review_ids(client.get(f"/insurers/{CODE}", params=params).text)] == [
        "slow_claim"
    ]
    lowest = _review_ids(client.get(f"/insurers/{CODE}", params={"sort": "lowest"}).text)
    assert names[lowest[0]] == "slow_claim"
    empty = client.get(f"/insurers/{CODE}", params={"stage": "issuance", "stars": "1"})
    assert _review_ids(empty.text) == [] and soup_of(empty.text).select_one("#reviews .empty")


def test_filtered_url_round_trips_into_the_form_and_pager(client: TestClient, shop: Seeded) -> None:
    soup = soup_of(
        client.get(f"/insurers/{CODE}", params={"stage": "claim", "sort": "oldest"}).text
    )
    form = soup.select_one("form.filters")
    assert form is not None and form["method"] == "get"
    assert form["hx-push-url"] == "true" and form["hx-target"] == "#reviews"
    chosen = {s["name"]: s.select_one("option[selected]") for s in form.select("select")}
    assert chosen["stage"]["value"] == "claim"  # type: ignore[index]
    assert chosen["sort"]["value"] == "oldest"  # type: ignore[index]
    assert chosen["channel"] is None  # "all channels" is the first option
    regions = [o["value"] for o in form.select("select[name=region] option")]
    assert regions == ["", "320000", "430000"]


def _many(engine: Engine, code: str, n: int) -> None:
    with engine.begin() as conn:
        directory.add_insurer(conn, code, "翻页测试财险")
    texts = [f"第{i}条评价" for i in range(n)]
    record_batch(
        engine,
        [
            RatingIn(
                insurer=code,
                stage="claim" if i % 2 else "renewal",
                channel="web",
                scale=5,
                value=5,
                occurred_at=NOW - timedelta(hours=i + 1),
                source="test-public",
                idempotency_key=key(),
                text=text,
            )
            for i, text in enumerate(texts)
        ],
    )


def test_pages_keep_the_filters(client: TestClient, engine: Engine) -> None:
    _many(engine, "PWIPAGES", 50)  # 25 claim reviews: two pages of claim
    first = client.get("/insurers/PWIPAGES", params={"stage": "claim"})
    assert len(_review_ids(first.text)) == 20
    nxt = soup_of(first.text).select_one('nav.pager a[rel="next"]')
    assert nxt is not None and nxt["hx-get"] == nxt["href"]
    assert nxt["hx-push-url"] == "true"
    assert parse_qs(urlsplit(str(nxt["href"])).query) == {"stage": ["claim"], "page": ["2"]}
    second = client.get(str(nxt["href"]))
    assert len(_review_ids(second.text)) == 5
    assert not set(_review_ids(first.text)) & set(_review_ids(second.text))
    current = soup_of(second.text).select_one('nav.pager [aria-current="page"]')
    assert current is not None and current.get_text() == "2"
    prev = soup_of(second.text).select_one('nav.pager a[rel="prev"]')
    assert prev is not None and parse_qs(urlsplit(str(prev["href"])).query) == {"stage": ["claim"]}


def test_htmx_gets_only_the_reviews_fragment(client: TestClient, shop: Seeded) -> None:
    page = client.get(f"/insurers/{CODE}", params={"stage": "claim"}, headers=HX)
    assert page.status_code == 200 and "<html" not in page.text
    soup = soup_of(page.text)
    assert soup.select_one("#reviews") is not None and soup.select_one("svg") is None
    assert len(soup.select("article.review")) == 4
    form_query = "stage=claim&channel=&stars=&verified=&region=&sort="
    pushed = client.get(f"/insurers/{CODE}?{form_query}", headers=HX)
    assert pushed.headers["hx-push-url"] == f"/insurers/{CODE}?stage=claim"
    restore = client.get(f"/insurers/{CODE}", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in restore.text


def test_removed_text_shows_as_removed_with_its_score(client: TestClient, shop: Seeded) -> None:
    soup = soup_of(client.get(f"/insurers/{CODE}", params={"lang": "en"}).text)
    removed = soup.select_one(f"#review-{shop.ids['removed']}")
    assert removed is not None and "is-removed" in removed["class"]
    notice = " ".join(removed.select_one(".review-removed").get_text().split())
    assert notice.startswith("Text removed after regulator review on ")
    assert "reason: Spam or advertising. The score still counts." in notice
    assert "2 of 5 stars" in removed.get_text()
    assert "13800138000" not in soup.get_text() and removed.select_one(".review-text") is None


def test_review_text_is_escaped(client: TestClient, shop: Seeded) -> None:
    page = client.get(f"/insurers/{CODE}")
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;img src=x" in page.text
    soup = soup_of(page.text)
    review = soup.select_one(f"#review-{shop.ids['xss']} .review-text")
    assert review is not None and review.get_text() == XSS  # shown as text, literally
    assert not soup.select(".review-text script, .review-text img")


def test_each_review_shows_stage_channel_date_badge_and_branch(
    client: TestClient, shop: Seeded
) -> None:
    soup = soup_of(client.get(f"/insurers/{CODE}", params={"lang": "en"}).text)
    fast = soup.select_one(f"#review-{shop.ids['fast_claim']}")
    assert fast is not None
    text = fast.get_text(" ", strip=True)
    for expected in ("5 of 5 stars", "Verified", "Claim", "Web", "苏州中支", "江苏省", "UTC+8"):
        assert expected in text, expected
    assert fast.select_one("time[datetime]") is not None
    xss = soup.select_one(f"#review-{shop.ids['xss']}")
    assert xss is not None and "Unverified" in xss.get_text()
    happy = soup.select_one(f"#review-{shop.ids['counter_happy']}")
    assert happy is not None and "Satisfied" in happy.get_text()
    assert len(RATINGS) == 9


def test_trend_chart_geometry_breaks_the_line_at_empty_months() -> None:
    from datetime import date

    from portal.insurer_stats import MonthPoint
    from portal.web.insurers import nice_max, trend_chart

    assert [nice_max(n) for n in (0, 7, 11, 310, 801)] == [1, 8, 20, 400, 1000]
    points = [
        MonthPoint(date(2026, 1, 1), 10, 100.0),
        MonthPoint(date(2026, 2, 1), 0, None),
        MonthPoint(date(2026, 3, 1), 5, 0.0),
        MonthPoint(date(2026, 4, 1), 4, 50.0),
    ]
    chart = trend_chart(points, "en")
    assert chart.n_max == 10 and chart.line.count("M") == 2 and chart.line.count("L") == 1
    top, bottom = chart.score_y(100), chart.score_y(0)
    assert [s.point_y for s in chart.slots] == [top, None, bottom, (top + bottom) / 2]
    assert chart.slots[0].bar_h == bottom - top and chart.slots[1].bar_h == 0
    assert [s.label for s in chart.slots] == ["Jan", "Feb", "Mar", "Apr"]
    assert trend_chart(points, "zh_Hans").slots[2].title == "2026年3月"
