"""The XSS corpus through every entry point that stores user text, and every page that
shows user text checked for anything the payloads could have introduced.

Entry points (each payload through each, over HTTP or the CLI as an operator would):
web review text (/rate), insurer reply and its "change made" (/insurer/ratings/{id}/reply,
posted twice so there is a history), reviewer follow-up (/receipt/{id}/follow-up),
takedown explanation (/insurer/ratings/{id}/takedown), regulator decision note
(/regulator/takedowns/{id}), device label (/insurer/devices), staff names
(`portal staff import`), insurer and branch names (`portal insurer add`, `portal branch
add`). Names refused at input (e.g. invisible characters in a name) are counted.

Pages: every page that shows those texts, as the audience that sees it, parsed with
BeautifulSoup: no script, event handler, htmx attribute, javascript: URL or active tag
that came from user text; the ranking exports (CSV, XLSX) have no cell a spreadsheet
would run as a formula. A representative subset is then opened in Chromium: no dialog,
no CSP violation, and the live DOM (after htmx and the page scripts) is as clean.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from portal import credentials, ledger, search
from portal.cli import main
from portal.config import Settings
from portal.models import Reply, TakedownRequest
from portal.ratings import CHINA, record
from portal.web.app import create_app
from tests.factories import World, rating_in
from tests.hostile.conftest import REPORT
from tests.hostile.xss_corpus import PAYLOADS
from tests.web.conftest import BASE, PASSWORD, csrf_of

FORMULA = ("=", "+", "-", "@", "\t", "\r")
FORMULA_PAYLOADS = [
    '=HYPERLINK("http://evil.example","点我")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "=1+1",
]
ALL = PAYLOADS + FORMULA_PAYLOADS
OWN_SVG = {"avatar", "trend-chart"}  # the app's own inline SVGs (counter screen, trend)
JS_URL = re.compile(r"^[\x00-\x20]*j[\s\x00]*a[\s\x00]*v[\s\x00]*a[\s\x00]*s[\s\x00]*c", re.I)


def tag(i: int, payload: str, n: int | None = None) -> str:
    """The payload with its marker (at the end for a formula, which must stay first)."""
    marker = f"X{i:02d}"
    text = f"{payload} {marker}" if payload.startswith(FORMULA) else f"{marker} {payload}"
    if n is not None and len(text) > n:
        text = f"{payload[: n - 4]} {marker}" if payload.startswith(FORMULA) else text[:n]
    return text


def problems(html: str) -> list[str]:
    """Everything in a page that user text could have introduced (nothing may be)."""
    doc = BeautifulSoup(html, "html.parser")
    found = []
    for el in doc.find_all(True):
        name = el.name.lower()
        for attr, value in el.attrs.items():
            value = " ".join(value) if isinstance(value, list) else str(value)
            a = attr.lower()
            if a.startswith("on"):
                found.append(f"<{name} {attr}>")
            if a.startswith(("hx-on", "data-hx-on", "hx-vals", "data-hx-vals")):
                found.append(f"<{name} {attr}>")
            # The app's own hx- attributes are fine; these are the payloads' signatures.
            hx = a.removeprefix("data-")
            if (
                (hx.startswith("hx-") and re.search(r"alert|pwn", value))
                or (hx == "hx-get" and "logout" in value)
                or (hx == "hx-trigger" and re.search(r"\bload\b", value))
                or (hx == "hx-post" and name == "button")
            ):
                found.append(f"<{name} {attr}={value!r}>")
            if a in ("href", "src", "action", "formaction", "data", "xlink:href") and (
                JS_URL.match(value) and "script:" in re.sub(r"[\s\x00]", "", value.lower())
            ):
                found.append(f"<{name} {attr}={value!r}>")
        if name == "script" and not (
            (el.get("src") or "").startswith("/static/js/")
            or (el.get("type") == "application/json" and el.get("id") == "counter-i18n")
        ):
            found.append(f"<script> {str(el)[:80]!r}")
        if name in ("iframe", "object", "embed", "base", "style", "form") and name != "form":
            found.append(f"<{name}>")
        if name == "form" and (el.get("action") or "").lower().startswith("javascript"):
            found.append("<form action=javascript:>")
        if name == "meta" and el.get("http-equiv"):
            found.append("<meta http-equiv>")
        if name == "link" and not (el.get("href") or "").startswith("/static/"):
            found.append(f"<link href={el.get('href')!r}>")
        if name == "svg" and not OWN_SVG & set(el.get("class") or []):
            found.append("<svg> not the app's own")
        if name in ("details", "body") and el.get("ontoggle"):
            found.append(f"<{name} ontoggle>")
    return found


def markers(html: str) -> set[str]:
    text = BeautifulSoup(html, "html.parser").get_text(" ")
    return set(re.findall(r"X\d\d", text))


@dataclass
class World_:
    settings: Settings
    anon: TestClient
    insurer: TestClient
    regulator: TestClient
    ratings: list[tuple[int, str, str]] = field(default_factory=list)  # (i, id, token)
    replies: list[int] = field(default_factory=list)
    insurers: list[str] = field(default_factory=list)
    staff: list[str] = field(default_factory=list)
    branches: list[str] = field(default_factory=list)
    month: str = ""
    snapshot: int | None = None
    device_token: str = ""
    refused: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)


def _client(settings: Settings, n: int) -> TestClient:
    return TestClient(create_app(settings), base_url=BASE, client=(f"10.77.0.{n}", 50000))


def _login(c: TestClient, username: str) -> str:
    page = c.get("/login")
    r = c.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        headers={"origin": BASE},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return csrf_of(c.get("/").text)


def _post(c: TestClient, path: str, data: dict[str, str], csrf: str) -> Any:
    return c.post(
        path, data=data | {"csrf_token": csrf}, headers={"origin": BASE}, follow_redirects=False
    )


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {
        "DATABASE_URL": settings.database_url,
        "LEDGER_KEY_PATH": str(settings.ledger_key_path),
        "PHONE_KEY_PATH": str(settings.phone_key_path),
    }
    result = CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _rate_form(c: TestClient, insurer: str) -> dict[str, str]:
    page = c.get(f"/rate?insurer={insurer}&stage=claim")
    assert page.status_code == 200, page.text
    form = BeautifulSoup(page.text, "html.parser").find("form", id="rate-form")
    fields = {i["name"]: i.get("value", "") for i in form.find_all("input") if i.get("name")}
    return {k: v for k, v in fields.items() if k not in ("stage", "score")} | {
        "stage": "claim",
        "score": "2",
    }


def _count(w: World_, kind: str, ok: bool) -> None:
    bucket = w.stored if ok else w.refused
    bucket[kind] = bucket.get(kind, 0) + 1


@pytest.fixture(scope="module")
def world(
    app_settings: Settings, engine: Engine, users: World, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World_]:
    settings = app_settings
    tmp = tmp_path_factory.mktemp("xss")
    with _client(settings, 1) as anon, _client(settings, 2) as ins, _client(settings, 3) as reg:
        w = World_(settings, anon, ins, reg)
        # Operators: insurer, branch and staff names through the CLI.
        for i, p in enumerate(ALL):
            code, _ = _cli(settings, "insurer", "add", f"XS{i:02d}", tag(i, p, 100))
            _count(w, "insurer name", code == 0)
            if code == 0:
                w.insurers.append(f"XS{i:02d}")
            code, _ = _cli(
                settings, "branch", "add", users.insurer_a, f"XSB{i:02d}", tag(i, p, 100), "430200"
            )
            _count(w, "branch name", code == 0)
            if code == 0:
                w.branches.append(f"XSB{i:02d}")
            csv_file = Path(tmp / f"staff{i}.csv")
            with csv_file.open("w", newline="", encoding="utf-8") as f:
                out = csv.writer(f)
                out.writerow(["insurer", "branch", "staff_no", "name", "role"])
                out.writerow(
                    [users.insurer_a, users.branch_a, f"XSS{i:02d}", tag(i, p, 50), "teller"]
                )
            code, _ = _cli(settings, "staff", "import", str(csv_file))
            _count(w, "staff name (CSV)", code == 0)
            if code == 0:
                w.staff.append(f"XSS{i:02d}")
        # Reviewers: web reviews of insurer A (about the staff above), and of some of
        # the hostile-named insurers so that they are ranked too.
        for i, p in enumerate(ALL):
            form = _rate_form(anon, users.insurer_a)
            staff = f"XSS{i:02d}" if f"XSS{i:02d}" in w.staff else users.teller_a
            data = form | {"text": tag(i, p), "staff_no": staff, "branch": users.branch_a}
            r = anon.post("/rate", data=data, headers={"origin": BASE}, follow_redirects=False)
            _count(w, "web review text", r.status_code == 303)
            assert r.status_code == 303, r.text[:2000]
            rid, token = re.fullmatch(r"/receipt/(\w+)\?t=(.+)", r.headers["location"]).groups()
            w.ratings.append((i, rid, token))
        for code in w.insurers[-len(FORMULA_PAYLOADS) :]:
            r = anon.post("/rate", data=_rate_form(anon, code) | {"text": "好"},
                          headers={"origin": BASE}, follow_redirects=False)  # fmt: skip
            assert r.status_code == 303, r.text[:500]
        # The insurer: a reply (twice: a history), a device with a hostile label.
        ins_csrf = _login(ins, "ins-a")
        for i, rid, _ in w.ratings:
            for n in (1, 2):
                r = _post(
                    ins,
                    f"/insurer/ratings/{rid}/reply",
                    {"body": f"{tag(i, ALL[i])} ({n})", "change_made": tag(i, ALL[i], 500)},
                    ins_csrf,
                )
                _count(w, "insurer reply", r.status_code == 303)
        for i, p in enumerate(ALL):
            r = _post(ins, "/insurer/devices", {"branch": users.branch_a, "label": tag(i, p, 60)},
                      ins_csrf)  # fmt: skip
            _count(w, "device label", r.status_code == 201)
        # The reviewers follow up on the replies.
        anon_csrf = csrf_of(anon.get("/rate").text)
        for i, rid, token in w.ratings:
            r = _post(anon, f"/receipt/{rid}/follow-up", {"t": token, "body": tag(i, ALL[i])},
                      anon_csrf)  # fmt: skip
            _count(w, "reviewer follow-up", r.status_code == 303)
        # Takedown requests with hostile explanations; the regulator decides them with
        # hostile notes (every other one approved, so both outcomes are shown).
        for i, rid, _ in w.ratings:
            r = _post(
                ins,
                f"/insurer/ratings/{rid}/takedown",
                {"reason": "abuse", "explanation": tag(i, ALL[i], 1000)},
                ins_csrf,
            )
            _count(w, "takedown explanation", r.status_code == 303)
        reg_csrf = _login(reg, "reg")
        with engine.connect() as conn:
            requests = conn.execute(
                select(TakedownRequest.id, TakedownRequest.rating_id).order_by(TakedownRequest.id)
            ).all()
            w.replies = list(conn.execute(select(Reply.id)).scalars())
        index = {rid: i for i, rid, _ in w.ratings}
        for n, (request_id, rating_id) in enumerate(requests):
            i = index[rating_id]
            decision = "approved" if n % 2 == 0 else "rejected"
            if n == len(requests) - 1:
                break  # one stays open for the queues
            r = _post(reg, f"/regulator/takedowns/{request_id}",
                      {"decision": decision, "note": tag(i, ALL[i], 1000)}, reg_csrf)  # fmt: skip
            _count(w, "regulator decision note", r.status_code == 303)
        # Verified ratings (counter) last month and today about the hostile-named staff,
        # branches and insurers, so that the rankings show them.
        last = (datetime.now(CHINA).replace(day=1) - timedelta(days=1)).replace(day=15, hour=12)
        for when in (last, datetime.now(CHINA) - timedelta(hours=1)):
            for i in range(len(ALL)):
                over = {
                    "channel": "counter",
                    "source": "xss",
                    "occurred_at": when,
                    "scale": 3,
                    "value": 1,
                }
                if f"XSS{i:02d}" in w.staff:
                    record(engine, rating_in(users, staff_no=f"XSS{i:02d}", **over))
                if f"XSB{i:02d}" in w.branches:
                    record(engine, rating_in(users, branch=f"XSB{i:02d}", staff_no=None, **over))
            for code in w.insurers:
                record(engine, rating_in(users, insurer=code, branch=None, staff_no=None, **over))
        w.month = last.strftime("%Y-%m")
        # A device for the counter screen, a checkpoint, the search index, a ranking.
        with engine.begin() as conn:
            _, w.device_token = credentials.add_device(conn, users.insurer_a, users.branch_a)
        ledger.checkpoint(engine, ledger.load_key(settings.ledger_key_path, settings.ledger_origin))
        search.drain(engine, search.make_index(settings, engine))
        r = _post(reg, "/regulator/rankings/publish",
                  {"disclosure": "public", "period": "month", "p": w.month}, reg_csrf)  # fmt: skip
        assert r.status_code == 303, r.text[:1000]
        w.snapshot = int(r.headers["location"].rsplit("/", 1)[1])
        yield w


def pages(w: World_) -> list[tuple[str, TestClient, str, dict[str, str]]]:
    """(label, client, path, headers) of every page that shows user text."""
    month = f"period=month&p={w.month}"  # the finished month the hostile staff were rated in
    out: list[tuple[str, TestClient, str, dict[str, str]]] = [
        ("home", w.anon, "/", {}),
        ("insurer directory", w.anon, "/insurers", {}),
        ("insurer directory search", w.anon, "/insurers?q=XS", {}),
        ("public insurer page", w.anon, "/insurers/TA", {}),
        ("reviews fragment (htmx)", w.anon, "/insurers/TA?page=2", {"hx-request": "true"}),
        ("reviews page", w.anon, "/reviews", {}),
        ("reviews search", w.anon, "/reviews?q=X05", {}),
        ("reviews search fragment", w.anon, "/reviews?q=script", {"hx-request": "true"}),
        ("transparency", w.anon, "/transparency", {}),
        ("published rankings", w.anon, "/rankings", {}),
        ("published ranking", w.anon, f"/rankings/{w.snapshot}", {}),
        ("published ranking print", w.anon, f"/rankings/{w.snapshot}/print", {}),
        ("counter screen", w.anon, "/counter", {}),
        ("insurer home", w.insurer, "/insurer", {}),
        ("insurer inbox", w.insurer, "/insurer/inbox", {}),
        ("insurer inbox page 2", w.insurer, "/insurer/inbox?page=2", {}),
        ("insurer takedowns", w.insurer, "/insurer/takedowns", {}),
        ("insurer counter (devices)", w.insurer, "/insurer/counter", {}),
        ("insurer rankings", w.insurer, f"/insurer/rankings?{month}", {}),
        ("regulator home", w.regulator, "/regulator", {}),
        ("regulator takedowns", w.regulator, "/regulator/takedowns", {}),
        ("regulator screening", w.regulator, "/regulator/screening", {}),
        ("regulator rankings", w.regulator, f"/regulator/rankings?{month}", {}),
        ("regulator drill-down", w.regulator, f"/regulator/rankings/insurers/TA?{month}", {}),
        ("regulator counter", w.regulator, "/regulator/counter", {}),
    ]
    for code in w.insurers:
        out.append((f"insurer page {code}", w.anon, f"/insurers/{code}", {}))
    for i, rid, token in w.ratings:
        out.append((f"receipt {i}", w.anon, f"/receipt/{rid}?t={token}", {}))
        out.append((f"insurer rating page {i}", w.insurer, f"/insurer/ratings/{rid}", {}))
    for reply_id in w.replies:
        out.append((f"reply history {reply_id}", w.anon, f"/replies/{reply_id}/history", {}))
    return out


# Pages in the list that need not show a payload: figures only, or filled in by script.
NO_USER_TEXT = ("home", "transparency", "counter screen", "regulator home", "regulator counter",
                "insurer home", "published rankings")  # fmt: skip


def test_no_payload_becomes_markup_on_any_page(world: World_) -> None:
    checked, shown, bad = 0, set(), []
    per_page: list[str] = []
    for label, c, path, headers in pages(world):
        r = c.get(path, headers=headers)
        assert r.status_code == 200, (label, path, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("text/html"), (label, path)
        found = problems(r.text)
        if found:
            bad.append(f"{label} {path}: {found[:5]}")
        seen = markers(r.text)
        if not seen and not label.startswith(NO_USER_TEXT):
            bad.append(f"{label} {path}: shows none of the payloads (is it still tested?)")
        shown |= seen
        per_page.append(f"{label}: {len(seen)}")
        checked += 1
    assert not bad, "\n".join(bad)
    stored = ", ".join(f"{k} {v}" for k, v in world.stored.items())
    refused = ", ".join(f"{k} {v}" for k, v in world.refused.items()) or "none"
    REPORT.setdefault("XSS corpus", []).extend(
        [
            f"{len(ALL)} payloads x {checked} pages, 0 executed "
            f"({len(shown)} distinct payloads seen rendered as text)",
            f"stored through entry points: {stored}",
            f"refused at input: {refused}",
        ]
    )
    # Every payload was shown somewhere, as text.
    assert len(shown) == len(ALL), sorted(set(f"X{i:02d}" for i in range(len(ALL))) - shown)


def _export_cells(c: TestClient, path: str) -> list[str]:
    csv_r = c.get(path + ("&" if "?" in path else "?") + "format=csv")
    assert csv_r.status_code == 200, (path, csv_r.text[:300])
    cells = [cell for row in csv.reader(io.StringIO(csv_r.text.lstrip("\ufeff"))) for cell in row]
    xlsx_r = c.get(path + ("&" if "?" in path else "?") + "format=xlsx")
    assert xlsx_r.status_code == 200
    wb = load_workbook(io.BytesIO(xlsx_r.content))
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (path, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    cells.append(cell.value)
    return cells


def test_exports_have_no_formula_cells(world: World_) -> None:
    month = f"period=month&p={world.month}"
    exports = [
        (world.regulator, f"/regulator/rankings/export?{month}"),
        (
            world.regulator,
            f"/regulator/rankings/insurers/TA/export?{month}&part=staff",
        ),
        (
            world.regulator,
            f"/regulator/rankings/insurers/TA/export?{month}&part=branches",
        ),
        (world.insurer, f"/insurer/rankings/export?{month}&part=staff"),
        (world.anon, f"/rankings/{world.snapshot}/export"),
    ]
    seen = 0
    for c, path in exports:
        cells = _export_cells(c, path)
        formulas = [cell for cell in cells if cell.startswith(FORMULA)]
        assert not formulas, (path, formulas[:5])
        seen += sum(1 for cell in cells if re.search(r"X\d\d", cell))
    assert seen, "the exports should carry some of the hostile names"
    REPORT.setdefault("XSS corpus", []).append(
        f"exports: {len(exports)} x (CSV, XLSX), {seen} cells with hostile names, 0 formulas"
    )


BROWSER_PAGES = [
    "public insurer page",
    "reviews page",
    "reviews search",
    "transparency",
    "published ranking",
    "receipt 0",
    "receipt 11",
    "receipt 24",
    "insurer page XS04",
]
LOGGED_IN = ["insurer inbox", "insurer rating page 12", "insurer takedowns",
             "insurer counter (devices)"]  # fmt: skip
REGULATOR = ["regulator takedowns", "regulator drill-down"]
LIVE_DOM = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.getAttributeNames()) {
      if (a.startsWith('on') || a.startsWith('hx-on') || a.startsWith('hx-vals')) bad.push(el.tagName + ' ' + a);
      const v = el.getAttribute(a) || '';
      if (['href','src','action','formaction'].includes(a) && /^\\s*javascript:/i.test(v)) bad.push(el.tagName + ' ' + a);
    }
    if (el.tagName === 'SCRIPT' && !(el.src.includes('/static/js/') || el.type === 'application/json')) bad.push('SCRIPT');
  }
  return bad;
}"""  # noqa: E501


@pytest.mark.browser
def test_no_dialog_fires_in_chromium(world: World_, server: str, page: Any) -> None:
    dialogs: list[str] = []
    violations: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    labelled = {label: path for label, _, path, _ in pages(world)}
    visited = []

    def visit(label: str) -> None:
        page.goto(server + labelled[label])
        page.wait_for_load_state("networkidle")
        assert page.evaluate(LIVE_DOM) == [], label
        assert "/login" not in page.url, label
        if label != "transparency":  # counts per insurer only (the names are not hostile)
            assert re.search(r"X\d\d", page.inner_text("body")), label  # user text is shown
        visited.append(label)

    for label in BROWSER_PAGES:
        visit(label)
    for username, labels in (("ins-a", LOGGED_IN), ("reg", REGULATOR)):
        page.context.clear_cookies()
        page.goto(server + "/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.locator("form button[type=submit], form input[type=submit]").first.click()
        page.wait_for_load_state("networkidle")
        for label in labels:
            visit(label)
    # The counter screen: the hostile teller names arrive as JSON and are shown by JS.
    page.context.clear_cookies()
    page.goto(server + "/counter")
    page.get_by_test_id("pair-token").fill(world.device_token)
    page.get_by_test_id("pair-submit").click()
    page.get_by_test_id("device-place").wait_for()
    page.wait_for_load_state("networkidle")
    names = page.locator('[data-testid="staff-option"]').all_inner_texts()
    assert any(re.search(r"X\d\d", n) for n in names), names[:5]
    assert page.evaluate(LIVE_DOM) == []
    visited.append("counter screen (paired)")
    assert dialogs == [], dialogs
    assert violations == [], violations[:5]
    REPORT.setdefault("XSS corpus", []).append(
        f"Chromium: {len(ALL)} payloads x {len(visited)} pages, 0 executed "
        f"(no dialog, no CSP violation, live DOM clean)"
    )


def test_the_checker_catches_the_payloads_as_markup() -> None:
    """The page check is not vacuous: inserted raw, the markup payloads are caught."""
    inert = ("＜", "{{", "&lt;", "<!--", "<![CDATA[", "\u202egpj", "<scr\u200bipt>", "<\u200c")
    caught = [p for p in PAYLOADS if problems(f"<div>{p}</div>")]
    missed = [p for p in PAYLOADS if p not in caught and not any(s in p[:12] for s in inert)]
    assert not missed, missed
    assert len(caught) >= 20
