"""A visitor rates insurer TA on the web in Chromium: picks the insurer and stage, gives
stars (mouse and keyboard), writes a hostile-looking text, gets a code by "SMS" (the dev
inbox, in another tab), submits, keeps the receipt and sees the ledger proof.

Elements are found by id, name or data-testid, never by translated text. No dialog
may open (the text tries to), and the text must come back literally.
"""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import Dialog, Page, expect
from sqlalchemy import Engine

from portal import ledger, policies
from portal.config import Settings
from portal.directory import insurer_id
from portal.secrets_files import ensure_key_file
from tests.e2e.conftest import SHOTS
from tests.factories import make_world

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
SIZES = ({"width": 390, "height": 844}, {"width": 1366, "height": 768})


def shoot(page: Page, name: str) -> None:
    """The same state at a phone's and a laptop's size: rate-<name>-<w>x<h>.png.

    caret="initial": hiding the caret makes Playwright leave style="" on every input
    (its stylesheet is refused by our CSP), which htmx would then copy, and be refused.
    """
    for size in SIZES:
        shot = SHOTS / f"rate-{name}-{size['width']}x{size['height']}.png"
        page.set_viewport_size(size)
        page.screenshot(path=shot, full_page=True, caret="initial")


def register_policy(settings: Settings, engine: Engine) -> tuple[str, str]:
    world = make_world(engine)
    digits = f"{uuid.uuid4().int % 10**8:08d}"
    phone, number = f"139{digits}", f"PA{digits}"
    key = ensure_key_file(settings.phone_key_path)  # the running portal's key
    with engine.begin() as conn:
        iid = insurer_id(conn, world.insurer_a)
        policies.register(conn, iid, number, policies.phone_hash(key, "+86" + phone))
    return number, phone


def code_from_inbox(page: Page, server: str, masked: str) -> str:
    """Another tab, like a phone next to the laptop."""
    inbox = page.context.new_page()
    inbox.goto(server + "/dev/inbox")
    body = inbox.locator(f'li[data-testid="sms"][data-phone="{masked}"] .body').first
    code = re.search(r"\b\d{6}\b", body.inner_text()).group(0)
    shoot(inbox, "inbox")
    inbox.close()
    return code


def watch_dialogs(page: Page) -> list[str]:
    """Every alert() in any tab: one would mean the review text ran as code."""
    dialogs: list[str] = []

    def caught(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", caught)
    page.context.on("page", lambda other: other.on("dialog", caught))
    return dialogs


def pick_insurer_and_stage(page: Page, server: str) -> None:
    page.goto(server + "/lang/en?next=/rate")
    expect(page.get_by_test_id("pick-form")).to_be_visible()
    page.locator("#insurer").select_option("TA")
    page.locator('input[name="stage"][value="claim"]').check()
    shoot(page, "pick")
    page.get_by_test_id("pick-form").locator("button[type=submit]").click()
    page.wait_for_url("**/rate?insurer=TA&stage=claim")
    expect(page.locator('input[name="stage"][value="claim"]')).to_be_checked()


def submit_without_stars(page: Page) -> None:
    """The form explains what is missing and keeps what was typed."""
    page.locator("#text").fill(HOSTILE)
    expect(page.locator("#text-count [data-count]")).to_have_text(str(len(HOSTILE)))
    page.get_by_test_id("submit-rating").click()
    expect(page.locator("#error-summary")).to_be_focused()
    expect(page.locator("#score-error")).to_be_visible()
    expect(page.locator("#text")).to_have_value(HOSTILE)
    shoot(page, "errors")


def give_stars_branch_and_staff(page: Page) -> None:
    """Stars by mouse, then by keyboard: it is a real radio group."""
    page.locator('label[for="score-3"]').click()
    expect(page.locator("#score-3")).to_be_checked()
    page.locator("#score-3").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#score-4")).to_be_checked()
    page.locator("#branch").select_option("TA-ZZ01")
    page.locator("#staff_no").fill("ZZ0001")


def verify_with_a_code(page: Page, server: str, number: str, phone: str) -> None:
    """The code is sent with htmx (no page load), read in the inbox, typed in."""
    page.locator("#policy_no").fill(number.lower())
    page.locator("#phone").fill(f"{phone[:3]} {phone[3:7]} {phone[7:]}")
    page.evaluate("window.sameDocument = true")
    page.get_by_test_id("send-code").click()
    masked = phone[:3] + "****" + phone[-4:]
    expect(page.get_by_test_id("code-status")).to_contain_text(masked)
    expect(page.locator("#code")).to_be_focused()  # the swapped-in field has the focus
    assert page.evaluate("window.sameDocument === true")
    shoot(page, "code-sent")
    page.locator("#code").fill(code_from_inbox(page, server, masked))


def read_the_receipt(page: Page) -> str:
    """Verified, and the text shown as text."""
    page.wait_for_url(re.compile(r".*/receipt/[0-9a-f]{32}\?t=.+"))
    expect(page.get_by_test_id("verified")).to_be_visible()
    expect(page.get_by_test_id("review-text")).to_have_text(HOSTILE)
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    shoot(page, "receipt")
    return page.get_by_test_id("rating-id").inner_text()


def see_the_proof(page: Page, engine: Engine, settings: Settings, rating_id: str) -> None:
    """Waiting at first; after a checkpoint, the inclusion proof and the signed note."""
    page.get_by_test_id("proof-link").click()
    expect(page.get_by_test_id("proof-pending")).to_be_visible()
    shoot(page, "proof-pending")
    ledger.checkpoint(engine, ledger.load_key(settings.ledger_key_path, settings.ledger_origin))
    page.reload()
    expect(page.get_by_test_id("proof-included")).to_be_visible()
    with engine.connect() as conn:
        proof = ledger.inclusion(conn, rating_id)
    expect(page.get_by_test_id("leaf-index")).to_have_text(str(proof["leaf_index"]))
    root_line = proof["checkpoint"].note.splitlines()[2]  # base64 root in the signed note
    expect(page.get_by_test_id("signed-note")).to_contain_text(root_line)
    shoot(page, "proof")


def test_a_visitor_rates_with_a_code_and_sees_receipt_and_proof(
    server: str, page: Page, engine: Engine, settings: Settings
) -> None:
    dialogs = watch_dialogs(page)
    number, phone = register_policy(settings, engine)
    pick_insurer_and_stage(page, server)
    submit_without_stars(page)
    give_stars_branch_and_staff(page)
    verify_with_a_code(page, server, number, phone)
    page.get_by_test_id("submit-rating").click()
    rating_id = read_the_receipt(page)
    see_the_proof(page, engine, settings, rating_id)
    assert dialogs == []
    # The refused form is an HTTP 422 by design; anything else (a CSP violation) fails.
    assert [e for e in page.console_errors if "status of 422" not in e] == []
