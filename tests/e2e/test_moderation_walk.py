"""Issue 5 in a browser: an insurer replies and asks for a takedown, the regulator
approves, the public sees the notice, the score still counts and the ledger verifies."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import Engine

from portal import rollups
from portal.config import Settings
from portal.ratings import record
from tests.e2e.conftest import SHOTS
from tests.factories import make_world, rating_in
from tests.web.conftest import PASSWORD

TEXT = "理赔员态度恶劣，说我骗保，电话13800138000"


def _login(page, server: str, user: str, then: str) -> None:  # noqa: ANN001
    page.goto(f"{server}/login?next={then}")
    page.get_by_label("用户名").fill(user)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"**{then}")


def _portal(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "LEDGER_KEY_PATH": str(settings.ledger_key_path),
        "PHONE_KEY_PATH": str(settings.phone_key_path),
        "ENVIRONMENT": "test",
    }
    return subprocess.run(
        [sys.executable, "-m", "portal", *args], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_reply_takedown_and_approval(
    server: str,
    browser,
    users,
    engine: Engine,
    settings: Settings,  # noqa: ANN001
) -> None:
    world = make_world(engine)
    rid = record(engine, rating_in(world, value=1, verified=True, text=TEXT)).id
    with engine.connect() as conn:
        before = rollups.totals(conn, _ta(conn), verified_only=True)

    insurer = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = insurer.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    _login(page, server, "ins-a", "/insurer/inbox")
    item = page.get_by_test_id("inbox-item").filter(has_text="理赔员态度恶劣").first
    assert "138****8000" in item.inner_text()  # masked even for the insurer
    page.screenshot(path=SHOTS / "insurer-inbox-zh.png", full_page=True)
    item.get_by_role("link").click()
    page.wait_for_url(f"**/insurer/ratings/{rid}")

    # Reply with htmx: the thread is swapped in place, the page is not reloaded.
    page.evaluate("window.__stayed = true")
    page.get_by_label("您的回复").fill("非常抱歉，我们已约谈理赔员并致电您处理。")
    page.get_by_label("因这条评价所作的具体改进（选填）").fill("理赔员上岗前增加服务规范培训")
    page.get_by_role("button", name="发布回复").click()
    page.get_by_text("回复已发布。").wait_for()
    assert page.evaluate("window.__stayed === true")
    assert page.get_by_test_id("reply-insurer").is_visible()

    # Ask for the text to be taken down; it stays public meanwhile.
    page.get_by_label("理由").select_option("defamation")
    page.get_by_label("向监管部门的说明").fill("评价称我司理赔员指控客户骗保，与录音记录不符。")
    page.get_by_role("button", name="申请监管部门移除这段文字").click()
    page.get_by_text("申请已提交监管部门").wait_for()
    assert page.evaluate("window.__stayed === true")
    page.screenshot(path=SHOTS / "insurer-rating-zh.png", full_page=True)

    public = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    visitor = public.new_page()
    visitor.goto(f"{server}/insurers/{world.insurer_a}")
    review = visitor.locator(f"#review-{rid}")
    assert "理赔员态度恶劣" in review.inner_text()
    assert "我们已约谈理赔员" in review.get_by_test_id("reply-insurer").inner_text()
    assert "理赔员上岗前增加服务规范培训" in review.inner_text()

    # The regulator approves in place.
    regulator = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    desk = regulator.new_page()
    _login(desk, server, "reg", "/regulator/takedowns")
    card = desk.get_by_test_id("queue-request").filter(has_text="与录音记录不符")
    assert TEXT in card.inner_text()  # the full text as submitted, for the decision
    desk.screenshot(path=SHOTS / "regulator-takedowns-zh.png", full_page=True)
    card.get_by_role("button", name="批准：隐藏文字").click()
    desk.get_by_text("已批准：文字已隐藏，评分仍然计入。").wait_for()

    visitor.reload()
    review = visitor.locator(f"#review-{rid}")
    notice = review.get_by_test_id("removed-notice").inner_text()
    assert notice.startswith("经监管部门审核，文字已于") and "理由：诽谤" in notice
    assert "理赔员态度恶劣" not in review.inner_text()
    assert "我们已约谈理赔员" in review.inner_text()  # the reply stays
    review.scroll_into_view_if_needed()
    visitor.screenshot(path=SHOTS / "public-removed-notice-zh.png", full_page=True)
    with engine.connect() as conn:
        assert rollups.totals(conn, _ta(conn), verified_only=True) == before  # still counts

    visitor.goto(f"{server}/transparency")
    assert "甲测试财险" in visitor.get_by_test_id("transparency").inner_text()
    visitor.screenshot(path=SHOTS / "transparency-zh.png", full_page=True)

    assert _portal(settings, "checkpoint").returncode == 0
    verified = _portal(settings, "verify")
    assert verified.returncode == 0, verified.stderr
    assert errors == []
    for context in (insurer, public, regulator):
        context.close()


def _ta(conn) -> int:  # noqa: ANN001
    from portal.directory import insurer_id

    return insurer_id(conn, "TA")
