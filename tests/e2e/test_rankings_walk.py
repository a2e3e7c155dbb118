"""Issue 6 in a browser: the regulator slices the ranking by quarter, province and claim
stage (htmx), drills into an insurer, publishes, logs out; an anonymous visitor sees the
published ranking and downloads its CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from sqlalchemy import Engine

from portal.ratings import record_batch
from tests.e2e.conftest import SHOTS
from tests.factories import CHINA, key, make_world, rating_in
from tests.web.conftest import PASSWORD


def _seed(engine: Engine) -> None:
    """2022-Q2 (only this test writes there): A's claims in Zhuzhou 5 stars, B's in
    Changsha 2 stars; a few renewal ratings that the claim slice must leave out."""
    w = make_world(engine)
    at = datetime(2022, 5, 20, 10, tzinfo=CHINA)

    def some(insurer: str, branch: str, value: int, n: int, stage: str = "claim") -> list:
        return [
            rating_in(w, insurer=insurer, branch=branch, staff_no=None, value=value, stage=stage,
                      occurred_at=at, idempotency_key=key(), text=None)
            for _ in range(n)
        ]  # fmt: skip

    record_batch(
        engine,
        some(w.insurer_a, w.branch_a, 5, 35)
        + some(w.insurer_b, w.branch_b, 2, 35)
        + some(w.insurer_b, w.branch_b, 5, 10, "renewal"),
    )


def test_regulator_publishes_and_the_public_downloads(
    server: str,
    browser,
    users,
    engine: Engine,  # noqa: ANN001
) -> None:
    _seed(engine)
    SHOTS.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(f"{server}/login?next=/regulator/rankings")
    page.get_by_label("用户名").fill("reg")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/regulator/rankings")

    # Slice: quarter 2022-Q2, province 430000 (Hunan), claim stage. htmx swaps the table.
    filters = page.locator("form.filters")
    filters.locator("select[name=period]").select_option("quarter")
    filters.locator("input[name=p]").fill("2022-Q2")
    filters.locator("input[name=region]").fill("430000")
    filters.locator("select[name=scope]").select_option("province")
    filters.locator("select[name=stage]").select_option("claim")
    page.wait_for_url("**stage=claim**")
    table = page.locator("#ranking table.ranking")
    table.get_by_text("甲测试财险").wait_for()
    first = table.locator("tbody tr").nth(1)  # row 0: the industry median
    assert "甲测试财险" in first.inner_text() and "1" in first.locator("td.rank").inner_text()
    assert "35" in first.inner_text()  # claims only: B's renewal ratings are not counted
    assert "2022-Q2" in page.locator("#ranking h2").inner_text()
    page.screenshot(path=SHOTS / "regulator-rankings-zh.png", full_page=True)

    # Drill into insurer A: its branch, not B's.
    table.get_by_role("link", name="甲测试财险").click()
    page.wait_for_url("**/regulator/rankings/insurers/TA?**")
    assert "甲测试财险株洲中支" in page.inner_text("#ranking")
    assert "乙测试人寿" not in page.inner_text("#ranking")
    page.screenshot(path=SHOTS / "regulator-ranking-drill-zh.png", full_page=True)
    page.go_back()
    page.wait_for_url("**/regulator/rankings?**")

    # Publish to the public.
    page.locator("form.publish select[name=disclosure]").select_option("public")
    page.get_by_role("button", name="发布", exact=True).click()
    page.wait_for_url("**/rankings/*")
    published = page.url
    assert "2022-Q2" in page.inner_text("#snapshot")
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url(server + "/")
    assert page.get_by_role("link", name="登录").is_visible()
    assert errors == []
    ctx.close()

    # An anonymous visitor sees it on /rankings and downloads the CSV.
    visitor_ctx = browser.new_context(
        viewport={"width": 1400, "height": 900}, locale="zh-CN", accept_downloads=True
    )
    visitor = visitor_ctx.new_page()
    visitor.goto(f"{server}/rankings")
    assert "2022-Q2" in visitor.inner_text("#snapshot")
    assert "甲测试财险" in visitor.inner_text("#snapshot")
    assert visitor.url.rstrip("/").endswith("/rankings") and published.startswith(server)
    visitor.screenshot(path=SHOTS / "public-rankings-zh.png", full_page=True)
    with visitor.expect_download() as download:
        visitor.get_by_role("link", name="下载 CSV").click()
    with open(download.value.path(), encoding="utf-8-sig") as f:
        body = f.read()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[2][0] == "method" and rows[3][0] == "checkpoint_tree_size"
    assert any(len(r) > 2 and r[2] == "TA" and r[0] == "1" for r in rows)
    visitor_ctx.close()
