"""What a person sees: the home page, the language switch, logging in as a regulator."""

from __future__ import annotations

from sqlalchemy import Engine

from portal import rollups
from portal.ratings import record
from tests.e2e.conftest import SHOTS
from tests.factories import make_world, rating_in
from tests.web.conftest import PASSWORD


def test_home_in_chinese_then_english(server: str, page, engine: Engine) -> None:  # noqa: ANN001
    world = make_world(engine)
    for v in (1, 3, 5):
        record(engine, rating_in(world, value=v))
    page.goto(server + "/")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    assert page.get_by_role("link", name="首页").is_visible()
    page.screenshot(path=SHOTS / "home-zh.png", full_page=True)
    page.get_by_role("link", name="English").click()
    page.wait_for_url("**/")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", name="By service stage").is_visible()
    page.screenshot(path=SHOTS / "home-en.png", full_page=True)
    assert page.console_errors == []  # CSP violations would show up here


def test_regulator_logs_in_and_out(server: str, page, users) -> None:  # noqa: ANN001
    page.goto(server + "/regulator")
    assert "/login" in page.url
    page.get_by_label("用户名").fill("reg")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/regulator")
    assert page.get_by_role("heading", name="行业概览").is_visible()
    assert page.get_by_text("甲测试财险").first.is_visible()
    page.screenshot(path=SHOTS / "regulator-zh.png", full_page=True)
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url(server + "/")
    assert page.get_by_role("link", name="登录").is_visible()
    assert page.console_errors == []


def test_wrong_password_shows_a_message(server: str, page, users) -> None:  # noqa: ANN001
    page.goto(server + "/login")
    page.get_by_label("用户名").fill("reg")
    page.get_by_label("密码").fill("wrong password")
    page.get_by_role("button", name="登录").click()
    assert page.get_by_role("alert").inner_text() == "用户名或密码错误。"
    page.screenshot(path=SHOTS / "login-error-zh.png", full_page=True)


def test_regulator_filters_with_htmx_and_a_shareable_url(
    server: str,
    page,
    users,  # noqa: ANN001
    engine: Engine,
) -> None:
    world = make_world(engine)
    record(engine, rating_in(world, stage="renewal", value=5))
    record(engine, rating_in(world, stage="claim", value=1))
    with engine.connect() as conn:
        expected = {r["code"]: r["n"] for r in rollups.by_insurer(conn, "renewal")}
    page.goto(server + "/login?next=/regulator")
    page.get_by_label("用户名").fill("reg")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/regulator")
    row = page.locator("#overview tbody tr", has_text="甲测试财险")
    everything = row.locator("td").first.inner_text()
    page.get_by_label("服务环节").select_option("renewal")
    page.wait_for_url("**/regulator?stage=renewal*")  # pushed by htmx, not a reload
    renewal = page.locator("#overview tbody tr", has_text="甲测试财险").locator("td").first
    assert renewal.inner_text() == str(expected[world.insurer_a])
    assert int(renewal.inner_text()) < int(everything.replace(",", ""))
    page.screenshot(path=SHOTS / "regulator-filtered-zh.png", full_page=True)
    page.reload()  # the URL alone reproduces the view
    assert page.get_by_label("服务环节").input_value() == "renewal"
    assert page.console_errors == []
