"""The evaluator screen (/counter) in a real browser: pair, serve, rate, and rate offline.

Elements are found by data-testid (or by data from the database), never by translated
text, so the tests hold in either language; expected strings come from the page's own
i18n block.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect
from sqlalchemy import Engine, func, select

from portal import credentials
from portal.models import CounterSession, Rating
from tests.e2e.conftest import SHOTS, PortalServer
from tests.factories import World, make_world

WIDE = {"width": 1280, "height": 800}
TALL = {"width": 800, "height": 1280}
QUEUE = "JSON.parse(localStorage.getItem('gp.counter.queue') || '[]')"


def _device(engine: Engine) -> tuple[World, str]:
    world = make_world(engine)
    with engine.begin() as conn:
        _, token = credentials.add_device(conn, world.insurer_a, world.branch_a)
    return world, token


def _strings(page: Page) -> dict[str, Any]:
    return page.evaluate("JSON.parse(document.getElementById('counter-i18n').textContent)")


def _fill(template: str, **params: object) -> str:
    return re.sub(r"%\((\w+)\)s", lambda m: str(params[m.group(1)]), template)


def _pair(page: Page, url: str, token: str) -> None:
    page.goto(url + "/counter")
    expect(page.get_by_test_id("pair-form")).to_be_visible()
    page.get_by_test_id("pair-token").fill(token)
    page.get_by_test_id("pair-submit").click()
    expect(page.get_by_test_id("device-place")).to_contain_text("甲测试财险")
    expect(page.get_by_test_id("device-place")).to_contain_text("甲测试财险株洲中支")


def _start(page: Page, world: World, stage: str) -> None:
    teller = page.locator(f'[data-testid="staff-option"][data-staff-no="{world.teller_a}"]')
    teller.click()
    page.get_by_test_id(f"stage-{stage}").click()
    expect(teller).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id(f"stage-{stage}")).to_have_attribute("aria-pressed", "true")
    page.get_by_test_id("start-service").click()
    expect(page.get_by_test_id("serving-name")).to_be_visible()
    expect(page.get_by_test_id("serving-name")).to_have_text("王小明")


def _stars_text(page: Page, strings: dict[str, Any]) -> str:
    staff = page.evaluate("JSON.parse(localStorage.getItem('gp.counter.current')).staff")
    if staff["new"]:
        return str(strings["new_staff"])
    if staff["stars"] == 1:
        return str(strings["star_one"])
    return _fill(strings["star_many"], num=staff["stars"])


def test_pair_serve_rate_then_rate_offline(
    portal_server: PortalServer,
    page: Page,
    engine: Engine,
) -> None:
    world, token = _device(engine)
    url = portal_server.start()
    page.set_viewport_size(WIDE)
    _pair(page, url, token)
    strings = _strings(page)
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    teller = page.locator(f'[data-testid="staff-option"][data-staff-no="{world.teller_a}"]')
    expect(teller).to_contain_text("王小明")
    expect(teller).to_contain_text(world.teller_a)

    # A served customer rates "dissatisfied".
    teller.click()
    page.get_by_test_id("stage-claim").click()
    page.get_by_test_id("ticket").fill("A017")
    page.screenshot(path=SHOTS / "counter-idle-1280x800.png")
    page.get_by_test_id("start-service").click()
    expect(page.get_by_test_id("serving-name")).to_have_text("王小明")
    expect(page.get_by_test_id("serving-initial")).to_have_text("王")
    expect(page.get_by_test_id("serving-staff-no")).to_contain_text(world.teller_a)
    expect(page.get_by_test_id("serving-stars")).to_contain_text(_stars_text(page, strings))
    expect(page.get_by_test_id("serving-stage")).to_have_text(strings["stages"]["claim"])
    expect(page.get_by_test_id("serving-ticket")).to_contain_text("A017")
    page.screenshot(path=SHOTS / "counter-serving-1280x800.png")
    page.get_by_test_id("end-service").click()
    expect(page.get_by_test_id("rate-dissatisfied")).to_be_visible()
    expect(page.get_by_test_id("end-service")).to_be_hidden()  # no way back
    page.get_by_test_id("rate-dissatisfied").click()
    expect(page.get_by_test_id("thanks")).to_be_visible()
    expect(page.get_by_test_id("thanks-level")).to_have_text(strings["levels"]["dissatisfied"])
    expect(page.locator("#counter")).to_have_attribute("data-queued", "0")
    expect(page.get_by_test_id("start-service")).to_be_visible(timeout=10_000)  # idle again
    expect(page.get_by_test_id("offline-banner")).to_be_hidden()
    assert page.console_errors == []  # CSP violations would show up here

    # The next one: the prompt survives a reload, the press survives the network.
    _start(page, world, "renewal")
    session_id = page.evaluate("JSON.parse(localStorage.getItem('gp.counter.current')).session_id")
    page.get_by_test_id("end-service").click()
    page.reload()
    expect(page.get_by_test_id("rate-satisfied")).to_be_visible()
    expect(page.get_by_test_id("rate-who")).to_contain_text("王小明")
    page.screenshot(path=SHOTS / "counter-rate-1280x800.png")
    page.set_viewport_size(TALL)
    page.screenshot(path=SHOTS / "counter-rate-800x1280.png")
    assert page.console_errors == []

    portal_server.stop()
    page.get_by_test_id("rate-satisfied").click()
    expect(page.get_by_test_id("thanks")).to_be_visible()
    banner = page.get_by_test_id("offline-banner")
    expect(banner).to_be_visible()
    expect(banner).to_have_text(strings["offline_one"])
    page.screenshot(path=SHOTS / "counter-thanks-800x1280.png")
    expect(page.locator("#counter")).to_have_attribute("data-queued", "1")
    queued = page.evaluate(QUEUE)
    assert [q["session_id"] for q in queued] == [session_id]
    assert queued[0]["level"] == "satisfied"
    assert re.fullmatch(r".+T.+[+-]\d\d:\d\d", queued[0]["occurred_at"])
    key = queued[0]["idempotency_key"]
    page.set_viewport_size(WIDE)
    expect(page.get_by_test_id("start-service")).to_be_visible(timeout=10_000)
    expect(banner).to_be_visible()
    page.screenshot(path=SHOTS / "counter-offline-1280x800.png")
    page.get_by_test_id("start-service").click()  # opening a session needs the network
    expect(page.get_by_test_id("start-error")).to_have_text(strings["start_offline"])
    expect(page.get_by_test_id("serving-name")).to_be_hidden()

    portal_server.start()  # same port, same database
    # No sleeping: the page retries by itself; wait until its queue is empty.
    expect(page.locator("#counter")).to_have_attribute("data-queued", "0", timeout=30_000)
    assert page.evaluate(QUEUE) == []
    expect(banner).to_be_hidden()
    with engine.connect() as conn:
        session = conn.execute(select(CounterSession).where(CounterSession.id == session_id)).one()
        same_key = conn.execute(
            select(func.count()).select_from(Rating).where(Rating.idempotency_key == key)
        ).scalar_one()
        rating = conn.execute(select(Rating).where(Rating.id == session.rating_id)).one()
    assert session.rating_id is not None
    assert same_key == 1
    assert (rating.idempotency_key, rating.value, rating.channel) == (key, 1, "counter")

    # Unpairing is a small link and a confirmation; afterwards the screen asks for a token.
    page.get_by_test_id("unpair").click()
    page.get_by_test_id("unpair-confirm").click()
    expect(page.get_by_test_id("pair-form")).to_be_visible()
    assert page.evaluate("localStorage.getItem('gp.counter.token')") is None


def test_a_wrong_token_is_refused_and_english_is_one_click_away(
    portal_server: PortalServer,
    page: Page,
    engine: Engine,
) -> None:
    _device(engine)
    url = portal_server.start()
    page.set_viewport_size(WIDE)
    page.goto(url + "/counter?lang=en")
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.get_by_test_id("lang-zh_Hans")).to_be_visible()
    page.get_by_test_id("pair-token").fill("gpd_not-a-real-token")
    page.get_by_test_id("pair-submit").click()
    expect(page.get_by_test_id("pair-error")).to_have_text(_strings(page)["pair_refused"])
    expect(page.get_by_test_id("pair-form")).to_be_visible()
    page.screenshot(path=SHOTS / "counter-pair-error-1280x800.png")
    page.get_by_test_id("lang-zh_Hans").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
