"""Public pages, security headers, language, health, and route declarations."""

from __future__ import annotations

import re

from sqlalchemy import Engine, func, select
from starlette.routing import Mount
from starlette.testclient import TestClient

from portal.models import Rating
from portal.ratings import record
from portal.web.app import ROUTERS, create_app
from portal.web.routing import ROLES, DeclaredRoute
from tests.factories import make_world, rating_in
from tests.web.conftest import text_of


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Rating)).scalar_one())


def test_home_shows_real_counts(client: TestClient, engine: Engine) -> None:
    world = make_world(engine)
    record(engine, rating_in(world))
    n = _count(engine)
    page = text_of(client.get("/", headers={"accept-language": "en"}).text)
    assert f"{n:,}" in page
    record(engine, rating_in(world))
    assert f"{n + 1:,}" in text_of(client.get("/", headers={"accept-language": "en"}).text)


def test_chinese_is_the_default_and_english_the_switch(client: TestClient) -> None:
    zh = client.get("/")
    assert 'lang="zh-Hans"' in zh.text and "首页" in zh.text
    en = client.get("/lang/en?next=/ledger", follow_redirects=False)
    assert en.status_code == 303 and en.headers["location"] == "/ledger"
    page = client.get("/ledger")
    assert 'lang="en"' in page.text and "Public ledger" in page.text
    assert (
        client.get("/lang/en?next=https://evil.example", follow_redirects=False).headers["location"]
        == "/"
    )


def test_security_headers_and_csp(client: TestClient) -> None:
    headers = client.get("/").headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_pages_have_no_inline_script_or_style(client: TestClient) -> None:
    from bs4 import BeautifulSoup

    for path in ("/", "/ledger", "/login"):
        soup = BeautifulSoup(client.get(path).text, "html.parser")
        assert all(s.get("src") for s in soup.find_all("script")), path
        assert not soup.find_all("style") and not soup.select("[style]"), path
        assert not [a for tag in soup.find_all(True) for a in tag.attrs if a.startswith("on")]


def test_healthz(client: TestClient) -> None:
    body = client.get("/healthz").json()
    # No Meilisearch configured here: search is the SQL fallback (tests/outages covers
    # ok, degraded and down with a real Meilisearch, and a database that is down).
    assert body["db"] == "ok" and body["search"] == "fallback"
    assert body["search_backend"] in ("sqlite-fts5", "sql")
    assert isinstance(body["outbox_pending"], int) and isinstance(body["tree_size"], int)


def test_unknown_page_is_a_translated_404(client: TestClient) -> None:
    page = client.get("/no/such/page", headers={"accept-language": "en"})
    assert page.status_code == 404 and "This page does not exist" in page.text
    api = client.get("/api/v1/nothing")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"


def test_every_route_declares_who_may_use_it(app_settings) -> None:  # noqa: ANN001
    app = create_app(app_settings)
    for route in app.routes:
        if isinstance(route, Mount):
            assert route.path == "/static", route.path  # static files are public by nature
            continue
        assert isinstance(route, DeclaredRoute), route.path
        assert route.roles and route.roles <= ROLES
    assert sum(len(r.routes) for r in ROUTERS) == len(app.routes) - 1


def test_openapi_describes_exactly_the_api_routes(client: TestClient, app_settings) -> None:  # noqa: ANN001
    spec = client.get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    app = create_app(app_settings)
    routes = {
        (re.sub(r":\w+}", "}", r.path), m.lower())  # {task_id:id} -> {task_id}
        for r in app.routes
        if isinstance(r, DeclaredRoute) and r.path.startswith("/api/")
        for m in r.methods or ()
        if m != "HEAD"
    }
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert described == routes
    for _, ops in spec["paths"].items():
        for op in ops.values():
            for ref in _refs(op):
                assert ref.split("/")[-1] in spec["components"]["schemas"], ref


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
