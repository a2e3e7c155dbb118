"""Access control, from the router: every route x every method x every role.

The routes come from `create_app(...).routes` (only the static Mount is skipped), so a
new route without an entry in CASES fails the test. Each cell is one request by one
role with concrete objects of insurer A; the expected status follows from the route's
declared roles (and the case's overrides). A refused request, and every GET or HEAD,
must leave every table as it was (row counts and a hash of the rows). A successful
response must not show another party's private marker (insurer A's takedown
explanation, device, API client, customer's phone; the policyholder's receipt token).

Then the methods no route declares (405, nothing changed), CSRF (every state-changing
page route refuses a missing or wrong token and a foreign Origin, nothing changed), and
the session lifecycle: logout, idle and absolute timeouts (with a substituted clock),
deactivated users, a new session id at every login.

One database and one app for the module (tests/web/access_world.py builds them).
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from starlette.routing import Mount

from portal import accounts
from portal.channels import web
from portal.credentials import token_hash
from portal.models import LoginSession, Reply, User
from portal.web.routing import DeclaredRoute
from portal.web.security import SAFE_METHODS, SESSION_COOKIE
from tests.conftest import PASSWORD
from tests.web.access_world import (
    DEVICE_LABEL,
    SECRET_EXPLANATION,
    USERS,
    VISIT_PHONE,
    AccessWorld,
    Caller,
    Digest,
    Req,
    build_world,
    last_call_moment,
    own_database,
    send,
)
from tests.web.conftest import csrf_of

ROLES = (
    "anonymous",
    "policyholder",  # an anonymous browser holding a web rating's receipt link
    "ins-a",
    "ins-b",
    "reg",
    "adm",
    "device",  # insurer A's counter device (bearer token)
    "device-b",  # insurer B's
    "phone",  # insurer A's call-centre client (HMAC-signed requests)
    "phone-b",  # insurer B's
)
DEVICES, PHONES = ("device", "device-b"), ("phone", "phone-b")
PROBES = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class Case:
    """One way to call a route: `build` makes the request for a role (creating fresh
    objects of insurer A where a success would use them up)."""

    build: Callable[[AccessWorld, str], Req]
    ok: int = 200  # the status of an allowed request
    expect: Mapping[str, int] = field(default_factory=dict)  # per-role overrides
    fresh_session: bool = False  # the request ends the session it is sent with: a new one
    note: str = ""


def at(path: str, query: str = "", **kw: Any) -> Callable[[AccessWorld, str], Req]:
    return lambda x, role: Req(path, query, **kw)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def uid() -> str:
    return uuid.uuid4().hex[:12]


B404 = {"ins-b": 404}  # insurer A's object: insurer B gets "not found"
NOT_INDUSTRY = dict.fromkeys(("anonymous", "policyholder", *DEVICES, *PHONES), 404)
Q2 = "period=quarter&p=2024-Q2"


def receipt_token(x: AccessWorld, role: str, holder: Any) -> str:
    """The holder's token for the policyholder; anyone else brings a real token of
    another receipt (a valid secret, for the wrong rating)."""
    assert x.other_receipt is not None
    return holder.token if role == "policyholder" else x.other_receipt.token


def _receipt(x: AccessWorld, role: str) -> Req:
    r = x.receipt
    assert r is not None
    return Req(f"/receipt/{r.rating_id}", f"t={receipt_token(x, role, r)}")


def _follow_up(x: AccessWorld, role: str) -> Req:
    r = x.new_receipt(replied=True)
    token = receipt_token(x, role, r)
    return Req(f"/receipt/{r.rating_id}/follow-up", form={"t": token, "body": "追评：还是很慢"})


def _rate_code(x: AccessWorld, role: str) -> Req:
    policy_no, phone = x.new_customer()
    form = {"insurer": "TA", "stage": "claim", "score": "4", "policy_no": policy_no,
            "phone": phone, "nonce": web.new_nonce()}  # fmt: skip
    return Req("/rate/code", form=form)


def _visit_upload(x: AccessWorld, role: str) -> Req:
    day = last_call_moment().date() - timedelta(days=10)
    item = {"kind": "claim", "policy_no": f"U{uid().upper()}", "phone": "13800000072",
            "staff_no": "AD0001", "date": day.isoformat(), "customer": "C72"}  # fmt: skip
    return Req("/api/v1/phone/return-visits", json={"visits": [item]})


def _phone_rating(x: AccessWorld, role: str) -> Req:
    body = {"call_id": f"C-{uid()}", "kind": "hotline", "stage": "renewal", "agent_no": "CC1042",
            "digits": "4", "scale": 5, "occurred_at": (datetime.now(UTC) -
            timedelta(minutes=3)).isoformat(), "policy_no": None, "caller_phone": None}  # fmt: skip
    return Req("/api/v1/phone/ratings", json=body)


# (method, route path) -> the ways to call it. HEAD uses the GET entry.
CASES: dict[tuple[str, str], list[Case]] = {
    # -- public pages ----------------------------------------------------------------------
    ("GET", "/"): [Case(at("/"))],
    ("GET", "/lang/{locale}"): [Case(at("/lang/en", "next=/insurers"), ok=303)],
    ("GET", "/healthz"): [Case(at("/healthz"))],
    ("GET", "/login"): [Case(at("/login"))],
    ("POST", "/login"): [
        Case(
            at(
                "/login",
                form={"username": "login-user", "password": PASSWORD, "next": "/"},
            ),
            ok=303,
            fresh_session=True,  # a login ends the session the browser had
        ),
    ],
    ("POST", "/logout"): [Case(at("/logout"), ok=303, fresh_session=True)],
    ("GET", "/ledger"): [Case(at("/ledger"))],
    ("GET", "/counter"): [Case(at("/counter"))],
    ("GET", "/rate"): [Case(at("/rate")), Case(at("/rate", "insurer=TA&stage=claim"))],
    ("POST", "/rate"): [
        Case(
            lambda x, role: Req(
                "/rate",
                form={
                    "insurer": "TA",
                    "stage": "claim",
                    "score": "4",
                    "text": "服务不错",
                    "nonce": web.new_nonce(),
                },
            ),
            ok=303,
        ),
    ],
    ("POST", "/rate/code"): [Case(_rate_code)],
    ("GET", "/receipt/{rating_id}"): [
        Case(_receipt, expect={r: 404 for r in ROLES if r != "policyholder"}),
    ],
    ("POST", "/receipt/{rating_id}/follow-up"): [
        Case(_follow_up, ok=303, expect={r: 404 for r in ROLES if r != "policyholder"}),
    ],
    ("GET", "/ledger/proof/{rating_id}"): [Case(lambda x, r: Req(f"/ledger/proof/{x.rating}"))],
    ("GET", "/dev/inbox"): [Case(at("/dev/inbox"), note="not in production")],
    ("GET", "/insurers"): [Case(at("/insurers"))],
    ("GET", "/insurers/{code}"): [Case(at("/insurers/TA"))],
    ("GET", "/reviews"): [Case(at("/reviews"))],
    ("GET", "/transparency"): [Case(at("/transparency"))],
    ("GET", "/replies/{reply_id:id}/history"): [
        Case(lambda x, r: Req(f"/replies/{x.reply}/history"))
    ],
    ("GET", "/rankings"): [Case(at("/rankings"))],
    ("GET", "/rankings/{snapshot_id}"): [
        Case(lambda x, r: Req(f"/rankings/{x.snapshots['public']}")),
        Case(lambda x, r: Req(f"/rankings/{x.snapshots['industry']}"), expect=NOT_INDUSTRY),
        Case(
            lambda x, r: Req(f"/rankings/{x.snapshots['regulator']}"),
            expect={r: 404 for r in ROLES if r not in ("reg", "adm")},
        ),
    ],
    ("GET", "/rankings/{snapshot_id}/print"): [
        Case(lambda x, r: Req(f"/rankings/{x.snapshots['public']}/print")),
        Case(
            lambda x, r: Req(f"/rankings/{x.snapshots['regulator']}/print"),
            expect={r: 404 for r in ROLES if r not in ("reg", "adm")},
        ),
    ],
    ("GET", "/rankings/{snapshot_id}/export"): [
        Case(lambda x, r: Req(f"/rankings/{x.snapshots['public']}/export")),
        Case(
            lambda x, r: Req(f"/rankings/{x.snapshots['industry']}/export", "format=xlsx"),
            expect=NOT_INDUSTRY,
        ),
    ],
    # -- public API ------------------------------------------------------------------------
    ("GET", "/api/v1/openapi.json"): [Case(at("/api/v1/openapi.json"))],
    ("GET", "/api/v1/checkpoints/latest"): [Case(at("/api/v1/checkpoints/latest"))],
    ("GET", "/api/v1/checkpoints/key"): [Case(at("/api/v1/checkpoints/key"))],
    ("GET", "/api/v1/checkpoints/consistency"): [
        Case(lambda x, r: Req("/api/v1/checkpoints/consistency", f"from=1&to={x.tree_size}"))
    ],
    ("GET", "/api/v1/checkpoints/{tree_size:id64}"): [
        Case(lambda x, r: Req(f"/api/v1/checkpoints/{x.tree_size}"))
    ],
    ("GET", "/api/v1/ratings/{rating_id}/proof"): [
        Case(lambda x, r: Req(f"/api/v1/ratings/{x.rating}/proof"))
    ],
    ("GET", "/api/v1/insurers"): [Case(at("/api/v1/insurers"))],
    ("GET", "/api/v1/insurers/{code}"): [Case(at("/api/v1/insurers/TA"))],
    ("GET", "/api/v1/reviews"): [Case(at("/api/v1/reviews"))],
    ("GET", "/api/v1/rankings"): [Case(at("/api/v1/rankings"))],
    ("GET", "/api/v1/rankings/{snapshot_id}"): [
        Case(lambda x, r: Req(f"/api/v1/rankings/{x.snapshots['public']}")),
        Case(
            lambda x, r: Req(f"/api/v1/rankings/{x.snapshots['regulator']}"),
            expect=dict.fromkeys(ROLES, 404),
            note="the API shows public snapshots only",
        ),
    ],
    # -- counter devices -------------------------------------------------------------------
    ("GET", "/api/v1/counter/device"): [Case(at("/api/v1/counter/device"))],
    ("POST", "/api/v1/counter/sessions"): [
        Case(
            lambda x, r: Req(
                "/api/v1/counter/sessions",
                json={
                    "staff_no": x.w.teller_a,
                    "stage": "claim",
                    "ticket": "A017",
                    "idempotency_key": f"k-{uid()}",
                },
            ),
            ok=201,
            expect={"device-b": 422},
            note="B's device cannot serve with A's teller",
        ),
    ],
    ("POST", "/api/v1/counter/ratings"): [
        Case(
            lambda x, r: Req(
                "/api/v1/counter/ratings",
                json={
                    "session_id": x.new_counter_session(),
                    "level": "satisfied",
                    "idempotency_key": f"k-{uid()}",
                    "occurred_at": now_iso(),
                },
            ),
            ok=201,
            expect={"device-b": 404},
        ),
    ],
    # -- phone clients ---------------------------------------------------------------------
    ("POST", "/api/v1/phone/ratings"): [Case(_phone_rating, ok=201, expect={"phone-b": 422})],
    ("POST", "/api/v1/phone/calls"): [
        Case(
            lambda x, r: Req(
                "/api/v1/phone/calls",
                json={
                    "call_id": f"C-{uid()}",
                    "agent_no": "CC1042",
                    "survey_offered": True,
                    "hung_up_before_survey": False,
                    "ended_at": now_iso(),
                },
            ),
            ok=201,
            expect={"phone-b": 422},
        ),
    ],
    ("GET", "/api/v1/phone/return-visits"): [
        Case(
            lambda x, r: Req(
                "/api/v1/phone/return-visits", f"date={last_call_moment().date().isoformat()}"
            )
        ),
    ],
    ("POST", "/api/v1/phone/return-visits"): [Case(_visit_upload, expect={"phone-b": 422})],
    ("POST", "/api/v1/phone/return-visits/{task_id:id}/attempts"): [
        Case(
            lambda x, r: Req(
                f"/api/v1/phone/return-visits/{x.new_visit()}/attempts",
                json={"outcome": "no_answer", "at": last_call_moment().isoformat()},
            ),
            ok=201,
            expect={"phone-b": 404},
        ),
    ],
    ("POST", "/api/v1/policies"): [
        Case(
            lambda x, r: Req(
                "/api/v1/policies",
                json={"policies": [{"policy_no": f"P{uid().upper()}", "phone": "13900000073"}]},
            )
        ),
    ],
    ("POST", "/api/v1/policies-in-force"): [
        Case(
            at(
                "/api/v1/policies-in-force",
                json={"months": [{"month": "2024-05", "policies": 1000}]},
            )
        ),
    ],
    # -- insurer pages ---------------------------------------------------------------------
    ("GET", "/insurer"): [Case(at("/insurer"))],
    ("GET", "/insurer/inbox"): [Case(at("/insurer/inbox"))],
    ("GET", "/insurer/ratings/{rating_id}"): [
        Case(lambda x, r: Req(f"/insurer/ratings/{x.rating}"), expect=B404)
    ],
    ("POST", "/insurer/ratings/{rating_id}/reply"): [
        Case(
            lambda x, r: Req(
                f"/insurer/ratings/{x.new_rating()}/reply", form={"body": "感谢您的反馈"}
            ),
            ok=303,
            expect=B404,
        ),
    ],
    ("POST", "/insurer/ratings/{rating_id}/takedown"): [
        Case(
            lambda x, r: Req(
                f"/insurer/ratings/{x.new_rating()}/takedown",
                form={"reason": "spam", "explanation": "广告"},
            ),
            ok=303,
            expect=B404,
        ),
    ],
    ("GET", "/insurer/takedowns"): [Case(at("/insurer/takedowns"))],
    ("GET", "/insurer/counter"): [Case(at("/insurer/counter"))],
    ("POST", "/insurer/devices"): [
        Case(
            lambda x, r: Req("/insurer/devices", form={"branch": x.w.branch_a, "label": "2号"}),
            ok=201,
            expect={"ins-b": 422},
            note="B cannot put a device in A's branch: the form's error for an unknown one",
        ),
    ],
    ("POST", "/insurer/devices/{device_id:id}/revoke"): [
        Case(lambda x, r: Req(f"/insurer/devices/{x.new_device()}/revoke"), ok=303, expect=B404)
    ],
    ("GET", "/insurer/phone"): [Case(at("/insurer/phone"))],
    ("POST", "/insurer/clients"): [Case(at("/insurer/clients"), ok=201)],
    ("POST", "/insurer/clients/{client_id}/rotate"): [
        Case(lambda x, r: Req(f"/insurer/clients/{x.new_client()}/rotate"), expect=B404)
    ],
    ("POST", "/insurer/clients/{client_id}/revoke"): [
        Case(lambda x, r: Req(f"/insurer/clients/{x.new_client()}/revoke"), ok=303, expect=B404)
    ],
    ("GET", "/insurer/visits"): [Case(at("/insurer/visits"))],
    ("POST", "/insurer/visits/{task_id:id}/phone"): [
        Case(
            lambda x, r: Req(
                f"/insurer/visits/{x.new_visit(status='unreachable')}/phone",
                form={"phone": "139 0000 0074"},
            ),
            ok=303,
            expect=B404,
        ),
    ],
    ("GET", "/insurer/rankings"): [Case(at("/insurer/rankings", Q2))],
    ("GET", "/insurer/rankings/export"): [Case(at("/insurer/rankings/export", Q2 + "&part=staff"))],
    # -- regulator pages -------------------------------------------------------------------
    ("GET", "/regulator"): [Case(at("/regulator"))],
    ("GET", "/regulator/counter"): [Case(at("/regulator/counter"))],
    ("GET", "/regulator/phone"): [Case(at("/regulator/phone"))],
    ("GET", "/regulator/takedowns"): [Case(at("/regulator/takedowns"))],
    ("POST", "/regulator/takedowns/{request_id}"): [
        Case(
            lambda x, r: Req(
                f"/regulator/takedowns/{x.new_takedown()}",
                form={"decision": "rejected", "note": "正常评价"},
            ),
            ok=303,
        ),
    ],
    ("GET", "/regulator/screening"): [Case(at("/regulator/screening"))],
    ("POST", "/regulator/screening/{flag_id}"): [
        Case(
            lambda x, r: Req(f"/regulator/screening/{x.new_flag()}", form={"outcome": "kept"}),
            ok=303,
        ),
    ],
    ("GET", "/regulator/rankings"): [Case(at("/regulator/rankings", Q2))],
    ("GET", "/regulator/rankings/insurers/{code}"): [
        Case(at("/regulator/rankings/insurers/TA", Q2))
    ],
    ("GET", "/regulator/rankings/export"): [
        Case(at("/regulator/rankings/export", Q2 + "&format=csv"))
    ],
    ("GET", "/regulator/rankings/insurers/{code}/export"): [
        Case(at("/regulator/rankings/insurers/TA/export", Q2))
    ],
    ("POST", "/regulator/rankings/publish"): [
        Case(
            at(
                "/regulator/rankings/publish",
                form={"period": "quarter", "p": "2024-Q2", "disclosure": "industry"},
            ),
            ok=303,
        ),
    ],
}


def markers(x: AccessWorld) -> dict[str, set[str]]:
    """Private strings and the roles that may see them in a successful response."""
    assert x.receipt is not None
    out = {
        SECRET_EXPLANATION: {"ins-a", "reg"},
        DEVICE_LABEL: {"ins-a", "device"},  # the device is told where it stands
        x.device_a[1]: set(),  # tokens and secrets are shown once, when made
        x.client_a[0]: {"ins-a"},
        x.client_a[1]: set(),
        VISIT_PHONE: {"phone"},  # A's customer, on A's call list
        x.visit_policy: {"phone"},
        x.receipt.token: {"policyholder"},
    }
    for role, (token, csrf) in x.sessions.items():
        out[token] = set()
        out[csrf] = {role}
    return out


def expected(route: DeclaredRoute, method: str, case: Case, role: str) -> int:
    if role in case.expect:
        return case.expect[role]
    roles = route.roles
    if "public" in roles:
        return case.ok
    if "device" in roles:
        return case.ok if role in DEVICES else 401
    if "client" in roles:
        return case.ok if role in PHONES else 401
    user = USERS.get(role)
    if user is None:  # not logged in: pages send them to the login page, the rest is 401
        return 303 if method in SAFE_METHODS else 401
    return case.ok if user in roles else 403


def declared(app: Any) -> list[DeclaredRoute]:
    routes = []
    for r in app.routes:
        if isinstance(r, Mount) and r.path == "/static":
            continue
        assert isinstance(r, DeclaredRoute), f"{r!r}: every route declares its roles"
        routes.append(r)
    return routes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccessWorld]:
    tmp: Path = tmp_path_factory.mktemp("access")
    for settings in own_database(tmp):
        yield from build_world(settings)


@pytest.fixture(scope="module")
def digest(world: AccessWorld) -> Iterator[Digest]:
    d = Digest(world.owner)
    yield d
    d.close()


def is_success(r: Any) -> bool:
    if r.status_code == 303 and r.headers.get("location", "").startswith("/login"):
        return False
    return 200 <= r.status_code < 400


@dataclass
class Tally:
    """Cells checked, and everything that went wrong (reported together at the end)."""

    x: AccessWorld
    digest: Digest
    cells: int = 0
    by_method: Counter[str] = field(default_factory=Counter)
    allowed: int = 0
    refused: int = 0
    unexpected_successes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # markers shown to a role that may see them

    def check(
        self,
        name: str,
        method: str,
        req: Req,
        who: Caller,
        want: int,
        refused: bool,
        **send_kw: Any,
    ) -> Any:
        """Send one request; check its status, that a refusal (or any GET or HEAD)
        changed nothing, that a success of a write stored something, and that no
        private marker of another party is shown."""
        before = self.digest.take()
        r = send(self.x.client, method, req, who, **send_kw)
        after = self.digest.take()
        self.cells += 1
        self.by_method[method] += 1
        self.refused += refused
        self.allowed += not refused
        location = r.headers.get("location", "")
        if refused and is_success(r):
            self.unexpected_successes.append(f"{name}: {r.status_code} {location}")
        if r.status_code != want:
            self.failures.append(f"{name}: {r.status_code}, expected {want}: {r.text[:200]!r}")
        elif want == 303 and refused and not location.startswith("/login"):
            self.failures.append(f"{name}: redirected to {location}")
        changed = Digest.changed(before, after)
        if (refused or method in SAFE_METHODS) and changed:
            self.failures.append(f"{name}: {r.status_code} but changed {changed}")
        if not refused and method not in SAFE_METHODS and not changed:
            self.failures.append(f"{name}: {r.status_code} but stored nothing")
        if is_success(r) and method != "HEAD" and _texty(r):
            shown = {m: ok for m, ok in markers(self.x).items() if m in r.text}
            self.seen |= {m for m, ok in shown.items() if who.role in ok}
            if leaks := [m for m, ok in shown.items() if who.role not in ok]:
                self.failures.append(f"{name}: shows {leaks}")
        return r

    def verdict(self) -> None:
        assert not self.unexpected_successes, self.unexpected_successes
        assert not self.failures, "\n".join(self.failures)


def _texty(r: Any) -> bool:
    ct = r.headers.get("content-type", "")
    return ct.startswith(("text/", "application/json"))


def _refusal(route: DeclaredRoute, role: str, want: int) -> bool:
    return want >= 400 or (want == 303 and role not in USERS and "public" not in route.roles)


def _allowed(route: DeclaredRoute, method: str, case: Case, role: str) -> bool:
    return not _refusal(route, role, expected(route, method, case, role))


def test_every_route_every_method_every_role(world: AccessWorld, digest: Digest) -> None:
    x = world
    routes = declared(x.client.app)
    keys = {(m, r.path) for r in routes for m in r.methods or () if m != "HEAD"}
    missing, stale = sorted(keys - CASES.keys()), sorted(CASES.keys() - keys)
    assert not missing, f"routes without an entry in CASES: {missing}"
    assert not stale, f"entries in CASES for routes that do not exist: {stale}"
    tally = Tally(x, digest)
    for route in routes:
        for method in sorted(route.methods or ()):
            for n, case in enumerate(CASES[("GET" if method == "HEAD" else method, route.path)]):
                for role in ROLES:
                    req = case.build(x, role)
                    who = x.caller(role, fresh_session=case.fresh_session)
                    want = expected(route, method, case, role)
                    name = f"{method} {route.path} #{n} as {role}"
                    tally.check(name, method, req, who, want, _refusal(route, role, want))
    print(
        f"\naccess matrix: {len(routes)} routes, {len(keys)} route x method pairs, "
        f"{len(ROLES)} roles: {tally.cells} cells checked {dict(tally.by_method)} "
        f"({tally.allowed} allowed, {tally.refused} refused), "
        f"unexpected successes: {len(tally.unexpected_successes)}"
    )
    # Each marker was shown to someone allowed: the leak check looks for what pages show.
    if unseen := [m for m, ok in markers(x).items() if ok and m not in tally.seen]:
        tally.failures.append(f"markers no allowed role was ever shown: {unseen}")
    tally.verdict()


REPRESENTATIVE = {"public": "anonymous", "insurer": "ins-a", "regulator": "reg", "admin": "adm",
                  "device": "device", "client": "phone"}  # fmt: skip


def test_methods_a_route_does_not_declare_are_405(world: AccessWorld, digest: Digest) -> None:
    """Every other method on every path: 405 and nothing changed, for an anonymous caller
    and for one caller of each role the path's routes let in (a hidden handler would
    show there; the router answers 405 before any role is looked at)."""
    x = world
    by_path: dict[str, list[DeclaredRoute]] = {}
    for r in declared(x.client.app):
        by_path.setdefault(r.path, []).append(r)
    tally = Tally(x, digest)
    for path, routes in by_path.items():
        methods = {m for r in routes for m in r.methods or ()}
        case = CASES[("GET" if "GET" in methods else sorted(methods)[0], path)][0]
        callers = ["anonymous", *(REPRESENTATIVE[role] for r in routes for role in sorted(r.roles))]
        for role in dict.fromkeys(callers):
            req = case.build(x, role)  # a 405 uses nothing up: one request serves them all
            for method in PROBES:
                if method not in methods:
                    name = f"{method} {path} as {role}"
                    tally.check(name, method, req, x.caller(role), 405, True)
    print(
        f"\nundeclared methods: {len(by_path)} paths, {tally.cells} cells checked "
        f"{dict(tally.by_method)}, unexpected successes: {len(tally.unexpected_successes)}"
    )
    tally.verdict()


EVIL = "https://evil.example"
CSRF_MESSAGES = ("The form has expired", "came from another site")  # security.py, in English


def test_csrf_on_every_state_changing_page_route(world: AccessWorld, digest: Digest) -> None:
    """Every non-API route that changes state, sent by a role it allows with a real session:
    without the token, with a wrong one (another session's), without the double-submit
    cookie, from a foreign Origin or a cross-site fetch even with the right token: 403,
    nothing changed. The same request with the token then succeeds. (API routes take no
    cookie session: a logged-in user gets 401 there, see the matrix.)"""
    x = world
    tally = Tally(x, digest)
    routes = [r for r in declared(x.client.app) if not r.path.startswith("/api/")]
    checked = []
    for route in routes:
        for method in sorted((route.methods or set()) - SAFE_METHODS):
            case = CASES[(method, route.path)][0]
            role = next(r for r in ROLES if _allowed(route, method, case, r))
            other = next(t for r, (_, t) in x.sessions.items() if r != role)
            variants: list[tuple[str, str | None, dict[str, str | None]]] = [
                ("no token", "", {}),
                ("another session's token", other, {}),
                ("foreign Origin", None, {"origin": EVIL}),
                ("Origin null", None, {"origin": "null"}),
                ("cross-site fetch", None, {"origin": None, "sec-fetch-site": "cross-site"}),
                ("same-site fetch", None, {"origin": None, "sec-fetch-site": "same-site"}),
                ("token header, foreign Origin", "", {"origin": EVIL}),
            ]
            for label, token, headers in variants:
                req = case.build(x, role)
                who = x.caller(role, fresh_session=case.fresh_session)
                if label.startswith("token header"):
                    headers = {**headers, "x-csrf-token": who.csrf}
                name = f"{method} {route.path} as {role}: {label}"
                r = tally.check(name, method, req, who, 403, True, csrf=token, headers=headers)
                if r.status_code == 403 and not any(m in r.text for m in CSRF_MESSAGES):
                    tally.failures.append(f"{name}: refused, but not by the CSRF check")
            if role not in USERS:  # the double-submit cookie: a token without its cookie
                req = case.build(x, role)
                who = x.caller(role)
                who.cookies = {}
                name = f"{method} {route.path} as {role}: token without its cookie"
                tally.check(name, method, req, who, 403, True)
            want = expected(route, method, case, role)
            tally.check(f"{method} {route.path} as {role}: with the token", method,
                        case.build(x, role), x.caller(role, fresh_session=case.fresh_session),
                        want, False)  # fmt: skip
            checked.append(f"{method} {route.path}")
    print(f"\nCSRF: {len(checked)} state-changing page routes, {tally.cells} requests, "
          f"unexpected successes: {len(tally.unexpected_successes)}")  # fmt: skip
    assert checked, "no state-changing page route found"
    tally.verdict()


def test_the_digest_sees_every_write(world: AccessWorld, digest: Digest) -> None:
    """The check behind "nothing changed": a write anywhere moves it, activity does not."""
    x = world
    before = digest.take()
    with x.owner.begin() as conn:
        conn.execute(update(LoginSession).values(last_seen_at=datetime.now(UTC)))
    assert digest.take() == before
    with x.owner.begin() as conn:
        conn.execute(update(Reply).where(Reply.id == x.reply).values(body="改过"))
    # insurer_pages: the page's data version, bumped by a trigger in the same transaction
    assert Digest.changed(before, digest.take()) == ["insurer_pages", "replies"]
    with x.owner.begin() as conn:
        conn.execute(update(Reply).where(Reply.id == x.reply).values(body="修改后的回复"))
    x.new_device()
    assert "devices" in Digest.changed(before, digest.take())


# -- sessions ----------------------------------------------------------------------------------


def _login(x: AccessWorld, username: str, planted: str | None = None) -> tuple[str, str, Any]:
    """Log in through the form: (session token, CSRF token, the login response)."""
    who = x.caller("anonymous")
    if planted:
        who.cookies[SESSION_COOKIE] = planted
    who.csrf = csrf_of(send(x.client, "GET", Req("/login"), who).text)  # as the form has it
    form = {"username": username, "password": PASSWORD, "next": "/"}
    r = send(x.client, "POST", Req("/login", form=form), who)
    assert r.status_code == 303, r.text[:300]
    token = r.cookies[SESSION_COOKIE]
    page = send(x.client, "GET", Req("/"), Caller("reg", {SESSION_COOKIE: token}))
    return token, csrf_of(page.text), r


def _as(token: str, csrf: str) -> Caller:
    return Caller("someone", {SESSION_COOKIE: token}, csrf)


def _user_routes(x: AccessWorld) -> list[tuple[str, str]]:
    """(method, concrete path) of every route only logged-in users may use."""
    out = []
    for r in declared(x.client.app):
        if r.roles <= set(USERS.values()):
            path = re.sub(r"\{[^}]+\}", "1", r.path)
            out += [(m, path) for m in sorted(r.methods or ())]
    return out


def test_logout_ends_the_session_and_login_never_reuses_a_planted_one(
    world: AccessWorld, digest: Digest
) -> None:
    x = world
    planted = x.session("ins-b")[0]  # someone's valid session, still in this browser
    token, csrf, r = _login(x, "login-user", planted=planted)
    assert token != planted  # a new session id at login (no session fixation)
    cookie = r.headers["set-cookie"].lower()
    assert all(flag in cookie for flag in ("httponly", "secure", "samesite=lax"))
    home = send(x.client, "GET", Req("/regulator"), _as(token, csrf))
    assert home.status_code == 200
    # The session this browser had is ended, not just overwritten in the cookie jar.
    gone = send(x.client, "GET", Req("/insurer"), _as(planted, ""))
    assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
    out = send(x.client, "POST", Req("/logout"), _as(token, csrf))
    assert out.status_code == 303 and 'gp_session=""' in out.headers["set-cookie"]
    with x.engine.connect() as conn:
        ended = conn.execute(
            select(LoginSession.ended_at).where(LoginSession.token_hash == token_hash(token))
        ).scalar_one()
    assert ended is not None
    # A copy of the old cookie (and its CSRF token) is an anonymous visitor's now, everywhere.
    before = digest.take()
    routes = _user_routes(x)
    for method, path in routes:
        r = send(x.client, method, Req(path), _as(token, csrf))
        if method in SAFE_METHODS:
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
        else:
            assert r.status_code == 401, (method, path, r.status_code)
    assert digest.take() == before
    print(f"\nafter logout: {len(routes)} logged-in routes refused the old cookie")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Sessions' time, moved on by hand (accounts.clock)."""
    start = datetime.now(UTC)

    def move_to(offset: timedelta) -> None:
        monkeypatch.setattr(accounts, "clock", lambda: start + offset)

    move_to(timedelta(0))
    return move_to


def _alive(x: AccessWorld, token: str) -> bool:
    r = send(x.client, "GET", Req("/regulator"), _as(token, ""))
    assert r.status_code in (200, 303), r.status_code
    return r.status_code == 200


def test_idle_timeout(world: AccessWorld, clock: Callable[[timedelta], None]) -> None:
    x = world
    idle = timedelta(minutes=x.settings.session_idle_minutes)
    minute = timedelta(minutes=1)
    token, csrf, _ = _login(x, "login-user")
    clock(idle - minute)
    assert _alive(x, token)
    clock(2 * (idle - minute))  # still in use: longer than `idle` after login is fine
    assert _alive(x, token)
    clock(2 * (idle - minute) + idle + minute)  # left alone a minute too long
    assert not _alive(x, token)
    clock(2 * (idle - minute))  # an ended session stays ended
    assert not _alive(x, token)
    r = send(x.client, "POST", Req("/regulator/rankings/publish", form={"period": "quarter"}),
             _as(token, csrf))  # fmt: skip
    assert r.status_code == 401


def test_absolute_timeout(world: AccessWorld, clock: Callable[[timedelta], None]) -> None:
    x = world
    idle = timedelta(minutes=x.settings.session_idle_minutes)
    limit = timedelta(hours=x.settings.session_max_hours)
    token, _, _ = _login(x, "login-user")
    step, at = idle - timedelta(minutes=1), timedelta(0)
    while at + step < limit:  # busy all day, never idle
        at += step
        clock(at)
        assert _alive(x, token), at
    clock(limit - timedelta(minutes=1))
    assert _alive(x, token)
    clock(limit + timedelta(minutes=1))
    assert not _alive(x, token)


def test_a_deactivated_users_session_stops_working(world: AccessWorld) -> None:
    x = world
    with x.owner.begin() as conn:
        user_id = accounts.add_user(conn, "leaver", PASSWORD, "insurer", x.w.insurer_a)
    token, csrf, _ = _login(x, "leaver")
    me = _as(token, csrf)
    assert send(x.client, "GET", Req("/insurer"), me).status_code == 200
    with x.owner.begin() as conn:
        conn.execute(update(User).where(User.id == user_id).values(active=False))
    r = send(x.client, "GET", Req("/insurer"), me)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert send(x.client, "POST", Req("/insurer/clients"), me).status_code == 401
    form = {"username": "leaver", "password": PASSWORD, "next": "/"}
    again = send(x.client, "POST", Req("/login", form=form), x.caller("anonymous"))
    assert again.status_code == 401
    # Switched on again, the user logs in afresh: the old cookie does not come back.
    with x.owner.begin() as conn:
        conn.execute(update(User).where(User.id == user_id).values(active=True))
    assert send(x.client, "GET", Req("/insurer"), me).status_code == 303
