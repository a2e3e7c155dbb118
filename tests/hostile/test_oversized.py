"""Oversized bodies are refused with 413 before any handler parses them, on every route
that takes a body (taken from the app's router, so a new route cannot escape).

Driven at the ASGI level with a receive() that counts what the app read: with a declared
Content-Length above the limit the app reads nothing; without one (chunked) or with one
that lies, it stops at the first chunk past the limit. Each request comes from a user
allowed on the route (the right role, a device token, the CSRF token), so without the
limit the body would have been parsed; nothing is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from portal import credentials
from portal.web.api import MAX_BODY
from portal.web.routing import DeclaredRoute
from tests.factories import World
from tests.hostile.conftest import REPORT, row_counts
from tests.web.conftest import BASE, csrf_of, login

CHUNK = 16 * 1024
TOTAL = 1024 * 1024  # sixteen times the limit


def body_routes(client: TestClient) -> list[tuple[DeclaredRoute, str]]:
    found = []
    for route in client.app.router.routes:  # type: ignore[attr-defined]
        if isinstance(route, DeclaredRoute):
            found += [(route, m) for m in sorted(route.methods or ()) if m in ("POST", "PUT")]
    return found


@dataclass
class Sent:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks_read: int = 0


def drive(
    client: TestClient, method: str, path: str, headers: dict[str, str], declared: int | None
) -> Sent:
    """Call the app with TOTAL bytes of form body in CHUNK pieces, counting the reads."""
    sent = Sent()
    pieces = TOTAL // CHUNK
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declared is not None:
        raw.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *raw],
        "client": ("10.9.9.9", 50000),
        "server": ("testserver", 443),
        "state": client.app_state.copy(),
    }

    async def receive() -> dict[str, Any]:
        if sent.chunks_read >= pieces:
            return {"type": "http.disconnect"}
        sent.chunks_read += 1
        body = b"text=" + b"A" * (CHUNK - 5) if sent.chunks_read == 1 else b"A" * CHUNK
        return {"type": "http.request", "body": body, "more_body": sent.chunks_read < pieces}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.status = message["status"]
            sent.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            sent.body += message.get("body", b"")

    client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr]
    return sent


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}:]+\}", "x", re.sub(r"\{[^}:]+:[^}]+\}", "1", path))


@pytest.fixture
def identities(client: TestClient, engine: Engine, users: World) -> dict[str, dict[str, str]]:
    """Headers that get a request past authorization, per role. The CSRF token travels
    in the form, as a browser sends it, so the CSRF check itself has to read the body
    (with the X-CSRF-Token header, routes that need no body, e.g. /logout, never read it)."""
    out: dict[str, dict[str, str]] = {}
    for role, username in (("regulator", "reg"), ("insurer", "ins-a"), ("admin", "adm")):
        client.cookies.clear()
        assert login(client, username).status_code == 303
        token = csrf_of(client.get("/").text)
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        out[role] = {"cookie": cookie, "origin": BASE, "csrf": token}
    client.cookies.clear()
    page = client.get("/rate")
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    out["public"] = {"cookie": cookie, "origin": BASE, "csrf": csrf_of(page.text)}
    with engine.begin() as conn:
        _, token = credentials.add_device(conn, users.insurer_a, users.branch_a, "413")
    out["device"] = {"authorization": f"Bearer {token}"}
    out["client"] = {}  # the signed API reads (and limits) the body before checking it
    return out


def _who(route: DeclaredRoute) -> str:
    for role in ("public", "device", "client", "insurer", "regulator", "admin"):
        if role in route.roles:
            return role
    raise AssertionError(route.path)


CASES = {
    "declared": TOTAL,  # an honest Content-Length above the limit
    "chunked": None,  # no Content-Length at all
    "lying": 100,  # says 100 bytes, sends a megabyte
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_body_route_refuses_oversized_bodies_before_parsing(
    case: str, client: TestClient, engine: Engine, identities: dict[str, dict[str, str]]
) -> None:
    routes = body_routes(client)
    assert len(routes) >= 20, "the router should list the POST routes"
    before = row_counts(engine)
    checked = []
    for route, method in routes:
        path = _concrete(route.path)
        form = (
            "application/json" if path.startswith("/api/") else "application/x-www-form-urlencoded"
        )
        who = {k: v for k, v in identities[_who(route)].items() if k != "csrf"}
        headers = {**who, "content-type": form}
        sent = drive(client, method, path, headers, CASES[case])
        assert sent.status == 413, (case, method, path, sent.status, sent.body[:300])
        if path.startswith("/api/"):
            assert b'"payload_too_large"' in sent.body
        else:
            assert sent.headers["content-type"].startswith("text/html")
        # Refused before parsing: nothing read for a declared size, else at most the
        # chunk that crossed the limit.
        most = 0 if case == "declared" else MAX_BODY // CHUNK + 1
        assert sent.chunks_read <= most, (case, path, sent.chunks_read)
        checked.append(f"{method} {path}")
    assert row_counts(engine) == before
    REPORT.setdefault("413 before parsing", []).append(
        f"{case}: {len(checked)} routes answered 413 having read at most "
        f"{most * CHUNK // 1024} KiB of {TOTAL // 1024} KiB: {', '.join(checked)}"
    )


def test_a_body_at_the_limit_is_still_read(client: TestClient) -> None:
    """The limit is not off by one: exactly 64 KiB reaches the handler (a 400/401, not 413)."""
    body = b"{" + b" " * (MAX_BODY - 2) + b"}"
    r = client.post("/api/v1/policies", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 401, r.text
    r = client.post(
        "/api/v1/policies", content=body + b" ", headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
