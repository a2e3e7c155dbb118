"""Accounts on the web: login, logout, rate limits. Roles, CSRF on every route, and the
session lifecycle (logout, timeouts, fixation): tests/web/test_access_matrix.py."""

from __future__ import annotations

from sqlalchemy import Engine
from starlette.testclient import TestClient

from portal import accounts
from tests.web.conftest import BASE, PASSWORD, World, csrf_of, login


def test_login_sets_a_secure_httponly_lax_session_cookie(client: TestClient, users: World) -> None:
    response = login(client, "reg")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("gp_session=")
    for flag in ("HttpOnly", "Secure", "SameSite=lax"):
        assert flag.lower() in cookie.lower()


def test_every_login_gets_a_new_token(client: TestClient, users: World) -> None:
    first = login(client, "reg").cookies["gp_session"]
    second = login(client, "reg").cookies["gp_session"]
    assert first != second


def test_wrong_password_is_refused_with_a_message(client: TestClient, users: World) -> None:
    response = login(client, "ins-b", "not the password")
    assert response.status_code == 401
    assert "gp_session" not in response.cookies
    assert "用户名或密码错误" in response.text or "Wrong user name or password" in response.text


def test_admin_can_end_all_sessions_of_a_user(
    client: TestClient, users: World, engine: Engine
) -> None:
    login(client, "ins-a")
    assert client.get("/insurer").status_code == 200
    with engine.begin() as conn:
        uid = conn.execute(
            accounts.select(accounts.User.id).where(accounts.User.username == "ins-a")
        ).scalar_one()
        assert accounts.end_all_sessions(conn, uid) >= 1
    assert client.get("/insurer", follow_redirects=False).status_code == 303


def test_login_is_rate_limited_per_account(
    client: TestClient, engine: Engine, owner_engine: Engine, users: World
) -> None:
    with owner_engine.begin() as conn:
        accounts.add_user(conn, "victim", PASSWORD, "regulator")
    for _ in range(accounts.MAX_FAILS_PER_ACCOUNT):
        assert login(client, "victim", "guess").status_code == 401
    blocked = login(client, "victim", PASSWORD)  # even the right password waits now
    assert blocked.status_code == 429
    assert "gp_session" not in blocked.cookies


def test_login_is_rate_limited_per_ip(client: TestClient, users: World) -> None:
    for i in range(accounts.MAX_FAILS_PER_IP):
        login(client, f"nobody-{i}", "guess")
    assert login(client, "reg").status_code == 429


def test_htmx_sends_the_csrf_token_in_a_header(client: TestClient, users: World) -> None:
    """Refusals without it: tests/web/test_access_matrix.py (every state-changing route)."""
    login(client, "reg")
    page = client.get("/regulator")
    ok = client.post(
        "/logout",
        headers={"x-csrf-token": csrf_of(page.text), "hx-request": "true", "origin": BASE},
        follow_redirects=False,
    )
    assert ok.status_code == 200 and ok.headers["hx-redirect"] == "/"
    assert client.get("/regulator", follow_redirects=False).status_code == 303


def test_insurer_sees_only_its_own_insurer(client: TestClient, users: World) -> None:
    login(client, "ins-b")
    page = client.get("/insurer").text
    assert "乙测试人寿" in page and "甲测试财险" not in page


def test_login_redirect_stays_on_this_site(client: TestClient, users: World) -> None:
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        page = client.get("/login")
        r = client.post(
            "/login",
            data={
                "username": "reg",
                "password": PASSWORD,
                "next": evil,
                "csrf_token": csrf_of(page.text),
            },
            headers={"origin": BASE},
            follow_redirects=False,
        )
        assert r.status_code == 303, (evil, r.status_code)
        assert r.headers["location"] == "/regulator", evil  # the role's home, not evil


def test_parallel_guesses_cannot_slip_under_the_limit(
    engine: Engine, owner_engine: Engine, users: World
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from portal.errors import RateLimited

    with owner_engine.begin() as conn:
        accounts.add_user(conn, "parallel", PASSWORD, "regulator")

    def guess(i: int) -> str:
        try:
            accounts.authenticate(engine, "parallel", f"guess {i}", f"10.77.0.{i}")
            return "checked"
        except RateLimited:
            return "limited"

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(guess, range(24)))
    assert results.count("checked") <= accounts.MAX_FAILS_PER_ACCOUNT
    assert results.count("limited") >= 24 - accounts.MAX_FAILS_PER_ACCOUNT
