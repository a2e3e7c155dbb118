"""Issue 6 over HTTP: the regulator's ranking, drill-down, publishing, the insurer's own
view, published snapshots (pages, API, exports). Who may use each route: see
tests/web/test_access_matrix.py."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, func, select, text
from starlette.testclient import TestClient

from portal import ledger
from portal.config import Settings
from portal.models import RankingSnapshot
from portal.ratings import record_batch
from tests.factories import CHINA, World, key, rating_in
from tests.web.conftest import BASE, csrf_of, login, text_of

Q2 = "period=quarter&p=2024-Q2"  # a quarter only these tests write to
ROLES = ("anonymous", "ins-a", "ins-b", "reg", "adm")


def _ratings(w: World, insurer: str, value: int, day: str, n: int, **kw: object) -> list:
    branch = w.branch_a if insurer == w.insurer_a else w.branch_b
    staff = w.teller_a if insurer == w.insurer_a else w.teller_b
    at = datetime.fromisoformat(f"{day}T10:00:00").replace(tzinfo=CHINA)
    base = dict(insurer=insurer, branch=branch, staff_no=staff, value=value, occurred_at=at)
    return [rating_in(w, **(base | kw), idempotency_key=key(), text=None) for _ in range(n)]


@pytest.fixture(scope="module")
def ranked(engine: Engine, users: World) -> World:
    """2024-Q1: B ahead of A. 2024-Q2: A (all 5 stars, Zhuzhou 430200) ahead of B (2 stars,
    Changsha 430100): A moves up one place, B down one."""
    w = users
    with engine.connect() as conn:
        done = conn.execute(
            text("SELECT COUNT(*) FROM rollup_daily WHERE day = '2024-05-10'")
        ).scalar_one()
    if not done:
        record_batch(engine, _ratings(w, w.insurer_a, 1, "2024-02-10", 40))
        record_batch(engine, _ratings(w, w.insurer_b, 5, "2024-02-10", 40))
        record_batch(engine, _ratings(w, w.insurer_a, 5, "2024-05-10", 40))
        record_batch(engine, _ratings(w, w.insurer_b, 2, "2024-05-10", 40))
    return w


def _table_rows(html: str) -> list[str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    return [text_of(str(tr)).strip() for tr in soup.select("table.ranking tbody tr")]


def test_regulator_ranking_with_rank_change_grades_and_medians(
    client: TestClient, ranked: World
) -> None:
    login(client, "reg")
    r = client.get(f"/regulator/rankings?{Q2}&stage=claim")
    assert r.status_code == 200, r.text[:500]
    rows = _table_rows(r.text)
    assert "行业中位数" in rows[0] or "Industry median" in rows[0]
    a = next(x for x in rows if "TA" in x)
    b = next(x for x in rows if "TB" in x)
    assert rows.index(a) < rows.index(b)
    assert a.startswith("1 ▲1") and b.startswith("2 ▼1")
    # Bayesian score: (40*100 + 50*62.5) / 90 = 79.2 for A, (40*25 + 50*62.5) / 90 = 45.8
    assert "79.2" in a and " BB " in f" {a} "
    assert "45.8" in b and " D " in f" {b} "


def test_slicing_by_province_city_and_stage(client: TestClient, ranked: World) -> None:
    login(client, "reg")
    hunan = _table_rows(client.get(f"/regulator/rankings?{Q2}&scope=province&region=430200").text)
    assert any("TA" in x for x in hunan) and any("TB" in x for x in hunan)
    zhuzhou = _table_rows(client.get(f"/regulator/rankings?{Q2}&scope=city&region=430211").text)
    assert any("TA" in x for x in zhuzhou) and not any("TB" in x for x in zhuzhou)
    guangdong = client.get(f"/regulator/rankings?{Q2}&scope=province&region=440000").text
    assert not any("TA" in x for x in _table_rows(guangdong))
    issuance = _table_rows(client.get(f"/regulator/rankings?{Q2}&stage=issuance").text)
    assert not any("TA" in x for x in issuance)


def test_htmx_gets_only_the_table(client: TestClient, ranked: World) -> None:
    login(client, "reg")
    r = client.get(f"/regulator/rankings?{Q2}", headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert "<html" not in r.text and 'id="ranking"' in r.text and "TA" in r.text


@pytest.mark.parametrize(
    "query",
    [
        "period=quarter&p=2024-Q9",
        "period=week",
        "period=custom&p=2024-05-01&to=2024-04-01",
        "scope=province&region=99",
        "scope=planet",
        "stage=payment",
        "channel=fax",
        "view=shiny",
        "period=year&p=0001",
        "period=year&p=9999",
        "period=month&p=0001-01",
        "period=quarter&p=9999-Q4",
        "period=custom&p=0001-01-01&to=0001-02-01",
    ],
)
def test_bad_slices_get_a_translated_error(client: TestClient, ranked: World, query: str) -> None:
    login(client, "reg")
    r = client.get(f"/regulator/rankings?{query}")
    assert r.status_code == 422
    assert "Internal" not in r.text and "Traceback" not in r.text


def test_drill_down_to_branches_and_staff(client: TestClient, ranked: World) -> None:
    login(client, "reg")
    r = client.get(f"/regulator/rankings/insurers/TA?{Q2}")
    assert r.status_code == 200
    page = text_of(r.text)
    assert "甲测试财险株洲中支" in page and "王小明" in page
    assert "乙测试人寿长沙分公司" not in page and "李晓红" not in page
    assert client.get(f"/regulator/rankings/insurers/NOPE?{Q2}").status_code == 404


def test_insurer_sees_only_its_own_branches_and_staff(client: TestClient, ranked: World) -> None:
    login(client, "ins-b")
    page = text_of(client.get(f"/insurer/rankings?{Q2}").text)
    assert "乙测试人寿长沙分公司" in page and "李晓红" in page
    assert "甲测试财险" not in page and "王小明" not in page
    staff = client.get(f"/insurer/rankings/export?{Q2}&part=staff&format=csv").text
    assert "李晓红" in staff and "王小明" not in staff and "method" in staff
    assert client.get(f"/insurer/rankings/export?{Q2}&part=secrets").status_code == 422
    fragment = client.get(f"/insurer/rankings?{Q2}", headers={"HX-Request": "true"}).text
    assert "<html" not in fragment and "李晓红" in fragment and "王小明" not in fragment


def _snapshot_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(RankingSnapshot)).scalar_one())


def _publish(client: TestClient, disclosure: str, extra: dict[str, str] | None = None) -> int:
    login(client, "reg")
    csrf = csrf_of(client.get(f"/regulator/rankings?{Q2}").text)
    form = {"period": "quarter", "p": "2024-Q2", "stage": "claim", "disclosure": disclosure}
    r = client.post(
        "/regulator/rankings/publish",
        data={**form, **(extra or {}), "csrf_token": csrf},
        headers={"origin": BASE},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:300]
    client.post("/logout", data={"csrf_token": csrf}, headers={"origin": BASE})
    client.cookies.clear()
    return int(r.headers["location"].rsplit("/", 1)[1])


def test_published_snapshot_is_frozen_and_names_its_checkpoint(
    client: TestClient, engine: Engine, ranked: World
) -> None:
    sid = _publish(client, "public")
    with engine.connect() as conn:
        cp = ledger.latest(conn)
        row = conn.execute(select(RankingSnapshot).where(RankingSnapshot.id == sid)).one()
    assert row.tree_size == cp.tree_size and row.root_hash == cp.root_hash
    before = client.get(f"/api/v1/rankings/{sid}").json()
    assert before["checkpoint"] == {"tree_size": cp.tree_size, "root_hash": cp.root_hash}
    a = next(r for r in before["rows"] if r["key"] == "TA")
    assert a["count"] == 40 and a["rank"] == 1

    # New ratings for the same quarter change the live view, never the snapshot.
    record_batch(engine, _ratings(ranked, ranked.insurer_a, 1, "2024-05-11", 5))
    after = client.get(f"/api/v1/rankings/{sid}").json()
    assert after == before
    login(client, "reg")
    live = _table_rows(client.get(f"/regulator/rankings?{Q2}&stage=claim").text)
    assert any("TA" in x and " 45 " in f" {x} " for x in live)


def test_public_api_and_page_show_only_public_snapshots(client: TestClient, ranked: World) -> None:
    public = _publish(client, "public")
    industry = _publish(client, "industry")
    regulator = _publish(client, "regulator")
    listed = {s["id"] for s in client.get("/api/v1/rankings").json()["rankings"]}
    assert public in listed and industry not in listed and regulator not in listed
    assert client.get(f"/api/v1/rankings/{industry}").status_code == 404
    assert client.get(f"/rankings/{public}").status_code == 200
    assert client.get(f"/rankings/{industry}").status_code == 404  # anonymous
    login(client, "ins-a")
    assert client.get(f"/rankings/{industry}").status_code == 200
    assert client.get(f"/rankings/{regulator}").status_code == 404
    assert client.get(f"/api/v1/rankings/{industry}").status_code == 404  # API: public only


def test_exports_carry_method_and_checkpoint(client: TestClient, ranked: World) -> None:
    sid = _publish(client, "public")
    r = client.get(f"/rankings/{sid}/export?format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
    head = {row[0]: row[1:] for row in lines[:6] if row}
    assert json.loads(head["method"][0])["prior_weight"] == 50
    assert head["checkpoint_tree_size"][0].isdigit()
    table = lines[lines.index(next(x for x in lines if x and x[0] == "rank")) :]
    assert any(row[2] == "TA" for row in table[1:])

    x = client.get(f"/rankings/{sid}/export?format=xlsx")
    ws = load_workbook(io.BytesIO(x.content)).active
    cells = [[c.value for c in row] for row in ws.iter_rows()]
    assert cells[2][0] == "method" and cells[3][0] == "checkpoint_tree_size"
    assert client.get(f"/rankings/{sid}/export?format=pdf").status_code == 422
    p = client.get(f"/rankings/{sid}/print")
    assert p.status_code == 200 and "TA" in p.text

    login(client, "reg")
    live = client.get(f"/regulator/rankings/export?{Q2}&format=xlsx")
    assert live.status_code == 200 and live.content[:2] == b"PK"


def test_publish_with_a_bad_disclosure_scope_stores_nothing(
    client: TestClient, engine: Engine, ranked: World
) -> None:
    login(client, "reg")
    csrf = csrf_of(client.get("/rankings").text)
    before = _snapshot_count(engine)
    for form in (
        {"period": "quarter", "p": "2024-Q2", "disclosure": "everyone"},
        {"period": "quarter", "p": "2024-Q7", "disclosure": "public"},
    ):
        r = client.post(
            "/regulator/rankings/publish",
            data={**form, "csrf_token": csrf},
            headers={"origin": BASE},
            follow_redirects=False,
        )
        assert r.status_code == 422
    assert _snapshot_count(engine) == before


@pytest.mark.parametrize(
    ("package", "vendored"),
    [
        ("uPlot.iife.min.js", "static/js/uplot-1.6.32.min.js"),
        ("uPlot.min.css", "static/css/uplot-1.6.32.min.css"),
    ],
)
def test_vendored_uplot_equals_the_package(package: str, vendored: str) -> None:
    root = Path(__file__).resolve().parents[2]
    pinned = json.loads((root / "package.json").read_text())["dependencies"]["uplot"]
    assert pinned in vendored
    upstream = root / "node_modules" / "uplot" / "dist" / package
    assert upstream.read_bytes() == (root / vendored).read_bytes(), "re-vendor (docs/rankings.md)"


def test_trend_chart_data_for_the_slice(client: TestClient, ranked: World) -> None:
    from bs4 import BeautifulSoup

    login(client, "reg")
    html = client.get(f"/regulator/rankings?{Q2}&stage=claim").text
    el = BeautifulSoup(html, "html.parser").select_one(".ranking-trend")
    data = json.loads(el["data-trend"])
    assert data["months"][-1] == "2024-06" and len(data["months"]) == 12
    a = next(s for s in data["series"] if s["key"] == "TA")
    assert a["values"][data["months"].index("2024-05")] is not None


def test_a_snapshot_re_derives_from_the_ledger(
    client: TestClient, engine: Engine, ranked: World, app_settings: Settings
) -> None:
    from portal import ranking_audit
    from portal.db import reading

    sid = _publish(client, "public")
    with reading(engine) as conn:
        assert ranking_audit.rederive(conn, sid) == []
        row = conn.execute(select(RankingSnapshot).where(RankingSnapshot.id == sid)).one()
    # Ratings sequenced after the snapshot's checkpoint are not among its leaves: the
    # snapshot still re-derives although the ledger (and the live ranking) moved on.
    record_batch(engine, _ratings(ranked, ranked.insurer_b, 5, "2024-05-12", 3))
    key = ledger.load_key(app_settings.ledger_key_path, app_settings.ledger_origin)
    assert ledger.checkpoint(engine, key).tree_size > row.tree_size
    with reading(engine) as conn:
        assert ranking_audit.rederive(conn, sid) == []

    # A snapshot whose numbers do not follow from the ledger is named, figure by figure.
    body = json.loads(row.body)
    body["rows"][0]["count"] += 1
    forged = {c: getattr(row, c) for c in row._fields if c != "id"} | {"body": json.dumps(body)}
    with engine.begin() as conn:
        fid = conn.execute(
            RankingSnapshot.__table__.insert().returning(RankingSnapshot.__table__.c.id), forged
        ).scalar_one()
    with reading(engine) as conn:
        problems = ranking_audit.rederive(conn, fid)
    assert [p.field for p in problems] == ["count"]

    # A root that the first tree_size leaves do not give is named too.
    forged["body"], forged["root_hash"] = row.body, "00" * 32
    with engine.begin() as conn:
        rid = conn.execute(
            RankingSnapshot.__table__.insert().returning(RankingSnapshot.__table__.c.id), forged
        ).scalar_one()
    with reading(engine) as conn:
        assert [p.field for p in ranking_audit.rederive(conn, rid)] == ["root_hash"]


def test_sorting_by_a_column(client: TestClient, ranked: World) -> None:
    login(client, "reg")

    def order(query: str) -> list[str]:
        rows = _table_rows(client.get(f"/regulator/rankings?{Q2}&{query}").text)[1:]
        return [k for row in rows for k in ("TA", "TB") if f" {k} " in f" {row} "]

    assert order("sort=mean&dir=desc") == ["TA", "TB"]
    assert order("sort=mean") == ["TB", "TA"]
    assert order("sort=dissatisfied&dir=desc") == ["TB", "TA"]
    assert order("sort=rank") == ["TA", "TB"]
    assert client.get(f"/regulator/rankings?{Q2}&sort=nonsense").status_code == 200  # default


def test_counter_flags_stand_beside_the_insurer_they_concern(
    client: TestClient, engine: Engine, owner_engine: Engine, ranked: World
) -> None:
    from portal.models import Branch, CounterFlag, Insurer

    with owner_engine.begin() as conn:
        iid, bid = conn.execute(
            select(Insurer.id, Branch.id)
            .join(Branch, Branch.insurer_id == Insurer.id)
            .where(Insurer.code == "TB")
        ).first()
        at = datetime(2024, 5, 3, 12, tzinfo=CHINA).astimezone(UTC)  # stored as the app does
        conn.execute(
            CounterFlag.__table__.insert(),
            [{"kind": "burst", "insurer_id": iid, "branch_id": bid, "detail": "{}",
              "created_at": at}] * 2,
        )  # fmt: skip
    login(client, "reg")
    rows = _table_rows(client.get(f"/regulator/rankings?{Q2}&stage=claim").text)
    b = next(r for r in rows if " TB " in f" {r} ")
    a = next(r for r in rows if " TA " in f" {r} ")
    assert "2 条柜面异常信号" in b and "柜面异常信号" not in a
    # Another quarter: the flags were raised in 2024-Q2 only.
    other = _table_rows(client.get("/regulator/rankings?period=quarter&p=2024-Q1").text)
    assert not any("柜面异常信号" in r for r in other)


def test_public_and_industry_snapshots_never_carry_regulator_only_context(
    client: TestClient, owner_engine: Engine, ranked: World
) -> None:
    """Counter flags, phone signals and policies in force are for the regulator only:
    not in the frozen body, the page, the API, the print page or the exports."""
    from portal.models import Branch, CounterFlag, Insurer

    with owner_engine.begin() as conn:
        iid, bid = conn.execute(
            select(Insurer.id, Branch.id)
            .join(Branch, Branch.insurer_id == Insurer.id)
            .where(Insurer.code == "TB")
        ).first()
        conn.execute(
            CounterFlag.__table__.insert(),
            {"kind": "burst", "insurer_id": iid, "branch_id": bid, "detail": "{}",
             "created_at": datetime(2024, 5, 4, 12, tzinfo=CHINA)},
        )  # fmt: skip
    hidden = ("counter_flags", "phone_signals", "policies_in_force")
    for scope in ("public", "industry"):
        sid = _publish(client, scope)
        with owner_engine.connect() as conn:
            body = json.loads(
                conn.execute(
                    select(RankingSnapshot.body).where(RankingSnapshot.id == sid)
                ).scalar_one()
            )
        assert not any(k in row for row in body["rows"] for k in hidden)
        if scope == "industry":
            login(client, "ins-a")
        else:
            api = client.get(f"/api/v1/rankings/{sid}").json()
            assert not any(k in row for row in api["rows"] for k in hidden)
        for page in (f"/rankings/{sid}", f"/rankings/{sid}/print"):
            assert "柜面异常信号" not in client.get(page).text
        export = client.get(f"/rankings/{sid}/export?format=csv").text
        assert not any(k in export for k in hidden)
        ws = load_workbook(io.BytesIO(client.get(f"/rankings/{sid}/export?format=xlsx").content))
        cells = {c.value for row in ws.active.iter_rows() for c in row}
        assert not any(k in cells for k in hidden)
        client.cookies.clear()

    regulator = _publish(client, "regulator")
    login(client, "reg")
    rows = client.get(f"/rankings/{regulator}/export?format=csv").text
    assert "counter_flags" in rows and "柜面异常信号" in client.get(f"/rankings/{regulator}").text


def test_counter_flags_are_counted_in_the_china_day_they_were_raised(
    engine: Engine, owner_engine: Engine, ranked: World
) -> None:
    """Flags are stored in UTC; 03:00 on 1 July in China is still 30 June in UTC. The
    window must be bound in UTC too (SQLite drops a bound datetime's zone)."""
    from portal import ranking_data, rankings
    from portal.db import reading
    from portal.models import Branch, CounterFlag, Insurer

    with owner_engine.begin() as conn:
        iid, bid = conn.execute(
            select(Insurer.id, Branch.id)
            .join(Branch, Branch.insurer_id == Insurer.id)
            .where(Insurer.code == "TA")
        ).first()
        at = datetime(2024, 7, 1, 3, tzinfo=CHINA).astimezone(UTC)
        conn.execute(
            CounterFlag.__table__.insert(),
            {"kind": "fast", "insurer_id": iid, "branch_id": bid, "detail": "{}",
             "created_at": at},
        )  # fmt: skip
    with reading(engine) as conn:
        july = ranking_data.counter_flags(conn, rankings.parse_period("month", "2024-07"))
        june = ranking_data.counter_flags(conn, rankings.parse_period("month", "2024-06"))
    assert july.get(iid) == 1 and iid not in june


def test_a_rating_recorded_between_checkpoint_and_build_is_covered_or_not_counted(
    client: TestClient, engine: Engine, ranked: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot's checkpoint must cover every rating its figures count: a late arrival
    for the period committed right after signing makes publish sign again."""
    from portal import ranking_audit
    from portal.db import reading

    real = ledger.checkpoint
    calls = []

    def checkpoint_then_a_rating(*args: object, **kw: object) -> object:
        cp = real(*args, **kw)
        if not calls:
            record_batch(engine, _ratings(ranked, ranked.insurer_a, 5, "2024-05-13", 1))
        calls.append(cp)
        return cp

    monkeypatch.setattr(ledger, "checkpoint", checkpoint_then_a_rating)
    sid = _publish(client, "regulator")
    monkeypatch.undo()
    with reading(engine) as conn:
        assert ranking_audit.rederive(conn, sid) == []
        row = conn.execute(select(RankingSnapshot).where(RankingSnapshot.id == sid)).one()
        assert row.tree_size == ledger.by_size(conn, row.tree_size).tree_size


@pytest.mark.parametrize(
    ("p", "message"),
    [("this month", "只能发布已结束的期间"), ("2001-01", "没有评价")],
)
def test_publishing_an_unfinished_or_empty_period_is_refused(
    client: TestClient, engine: Engine, ranked: World, p: str, message: str
) -> None:
    if p == "this month":
        p = datetime.now(CHINA).strftime("%Y-%m")
    before = _snapshot_count(engine)
    login(client, "reg")
    csrf = csrf_of(client.get(f"/regulator/rankings?{Q2}").text)
    r = client.post(
        "/regulator/rankings/publish",
        data={"period": "month", "p": p, "disclosure": "public", "csrf_token": csrf},
        headers={"origin": BASE, "accept-language": "zh-Hans"},
        follow_redirects=False,
    )
    assert r.status_code == 422 and message in r.text
    assert _snapshot_count(engine) == before


def test_htmx_filters_fall_back_or_say_what_is_wrong(client: TestClient, ranked: World) -> None:
    """Changing the period type keeps the old p: the current period of the new type is
    shown. A refused filter comes back to htmx as a 200 fragment naming the problem."""
    login(client, "reg")
    hx = {"HX-Request": "true", "accept-language": "zh-Hans"}
    r = client.get("/regulator/rankings?period=month&p=2024-Q2", headers=hx)
    assert r.status_code == 200 and 'id="ranking"' in r.text
    r = client.get("/regulator/rankings?period=year&p=2024-05-01", headers=hx)
    assert r.status_code == 200 and 'id="ranking"' in r.text
    r = client.get("/regulator/rankings?period=quarter&p=2024-Q2&scope=province", headers=hx)
    assert r.status_code == 200 and 'role="alert"' in r.text and 'id="ranking"' in r.text
    r = client.get("/regulator/rankings/insurers/TA?scope=planet", headers=hx)
    assert r.status_code == 200 and 'role="alert"' in r.text
    # Without htmx a bad filter is still a 422 page.
    assert client.get("/regulator/rankings?scope=province").status_code == 422


def test_ranking_pages_and_exports_are_never_cached(client: TestClient, ranked: World) -> None:
    """What they show depends on who is logged in: private, no-store, Vary: Cookie."""
    sid = _publish(client, "public")
    paths = ["/rankings", f"/rankings/{sid}", f"/rankings/{sid}/print",
             f"/rankings/{sid}/export?format=csv"]  # fmt: skip
    login(client, "reg")
    paths += [f"/regulator/rankings?{Q2}", f"/regulator/rankings/export?{Q2}",
              f"/regulator/rankings/insurers/TA?{Q2}",
              f"/regulator/rankings/insurers/TA/export?{Q2}"]  # fmt: skip
    for path in paths:
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "private, no-store", path
        assert "Cookie" in r.headers["vary"], path
    client.cookies.clear()
    login(client, "ins-a")
    for path in (f"/insurer/rankings?{Q2}", f"/insurer/rankings/export?{Q2}"):
        r = client.get(path)
        assert r.headers["cache-control"] == "private, no-store" and "Cookie" in r.headers["vary"]


def test_method_parameters_come_from_the_settings(
    app_settings: Settings, engine: Engine, ranked: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prior weight, minimum count and half-life are settings; pages use them and each
    snapshot records the ones it was computed with."""
    from dataclasses import replace

    from portal.config import load_settings
    from portal.web.app import create_app

    monkeypatch.setenv("RANKING_MIN_COUNT", "41")
    monkeypatch.setenv("RANKING_PRIOR_WEIGHT", "10")
    monkeypatch.setenv("RANKING_HALF_LIFE_DAYS", "30")
    loaded = load_settings(env_file="/nonexistent")
    assert loaded.ranking_method().min_count == 41
    assert loaded.ranking_method().half_life_days == 30
    custom = replace(app_settings, ranking_min_count=1000, ranking_prior_weight=10.0)
    with TestClient(create_app(custom), base_url=BASE, client=("10.9.9.9", 50000)) as c:
        login(c, "reg")
        rows = _table_rows(c.get(f"/regulator/rankings?{Q2}").text)
        assert all("不足" in r or "Insufficient" in r for r in rows if " TA " in f" {r} ")
        sid = _publish(c, "regulator")
    with engine.connect() as conn:
        method = json.loads(
            conn.execute(
                select(RankingSnapshot.method).where(RankingSnapshot.id == sid)
            ).scalar_one()
        )
    assert method["min_count"] == 1000 and method["prior_weight"] == 10


def test_drill_down_labels(client: TestClient, engine: Engine, ranked: World) -> None:
    """Ratings without a branch are a named row; the drill-down's median row is the
    insurer's own; an empty table's row spans its nine columns."""
    from bs4 import BeautifulSoup

    record_batch(
        engine, _ratings(ranked, ranked.insurer_a, 4, "2024-07-20", 2, branch=None, staff_no=None)
    )
    login(client, "reg")
    html = client.get("/regulator/rankings/insurers/TA?period=quarter&p=2024-Q3").text
    rows = _table_rows(html)
    assert any("总公司 / 未关联分支机构" in r for r in rows)
    assert any("本公司中位数" in r for r in rows) and not any("行业中位数" in r for r in rows)
    empty = client.get("/regulator/rankings/insurers/TA?period=month&p=2001-01").text
    cells = BeautifulSoup(empty, "html.parser").select("table.ranking tbody td.muted")
    assert cells and all(td["colspan"] == "9" for td in cells)
