"""A new visitor finds an insurer by pinyin, filters its reviews to claims with 1-2 stars,
and shares the filtered view by URL: the copy shows the same list. At a phone's and a
laptop's size, with screenshots."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine

from portal.ratings import record
from tests.e2e.conftest import SHOTS
from tests.factories import make_world, rating_in

SIZES = [(390, 844), (1366, 768)]


def _seed(engine: Engine) -> str:
    world = make_world(engine)
    tag = uuid.uuid4().hex[:6]
    for stage, value in [("claim", 1), ("claim", 2), ("claim", 5), ("issuance", 1)]:
        record(
            engine, rating_in(world, stage=stage, value=value, text=f"理赔{tag}第{value}星{stage}")
        )
    return tag


def _ids(page: Page) -> list[str]:
    return page.locator("#reviews article.review").evaluate_all("els => els.map(e => e.id)")


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_find_by_pinyin_filter_and_share(
    server: str, page: Page, engine: Engine, width: int, height: int
) -> None:
    tag = _seed(engine)
    page.set_viewport_size({"width": width, "height": height})
    page.goto(server + "/insurers")
    page.locator("#insurer-q").fill("jcscx")  # 甲测试财险 by its pinyin initials
    link = page.locator("#directory a[href='/insurers/TA']")
    expect(link).to_be_visible()
    page.screenshot(path=SHOTS / f"walk-pinyin-{width}x{height}.png", full_page=True)
    link.click()
    page.wait_for_url("**/insurers/TA")
    page.locator("#f-stage").select_option("claim")
    page.wait_for_url("**stage=claim**")
    page.locator("#f-stars").select_option("1-2")  # the unhappy ones: 1-2 stars
    page.wait_for_url("**stars=1-2**")
    expect(page.locator("#reviews article.review").first).to_contain_text(tag)
    shown = _ids(page)
    texts = page.locator("#reviews article.review").all_inner_texts()
    assert shown
    assert any(f"理赔{tag}第1星claim" in t for t in texts)
    assert any(f"理赔{tag}第2星claim" in t for t in texts)
    assert not any("第5星claim" in t and tag in t for t in texts)
    assert not any("第1星issuance" in t and tag in t for t in texts)
    page.screenshot(path=SHOTS / f"walk-filtered-{width}x{height}.png", full_page=True)
    shared = page.context.new_page()  # the URL pasted into a new tab
    shared.goto(page.url)
    assert _ids(shared) == shown
    assert shared.locator("#f-stage").input_value() == "claim"
    assert shared.locator("#f-stars").input_value() == "1-2"
    assert page.console_errors == []
