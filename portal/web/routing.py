"""Every route declares who may use it; the check happens here, in one place.

Roles: `public` (anyone), `regulator`, `insurer`, `admin` (logged-in users), and
`device` / `client` for channel APIs whose adapters authenticate the caller themselves
(bearer token, HMAC signature).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from functools import wraps
from urllib.parse import quote

from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from portal import accounts
from portal.accounts import ANONYMOUS, Principal
from portal.errors import Forbidden, Unauthorized
from portal.web.security import (
    ANON_CSRF_COOKIE,
    SAFE_METHODS,
    SESSION_COOKIE,
    anonymous_csrf_token,
    check_csrf,
)

ROLES = frozenset({"public", "regulator", "insurer", "admin", "device", "client"})


class IdConvertor(IntegerConvertor):
    """A row id in a path: at most 9 digits, so it fits the database's 32-bit keys.

    Starlette's `int` takes any run of digits, and PostgreSQL answers an id beyond
    2**31 - 1 with "integer out of range" (a 500); such a URL now simply matches no
    route (404)."""

    regex = "[0-9]{1,9}"


class Id64Convertor(IntegerConvertor):
    """A 64-bit number in a path (ledger tree sizes): at most 18 digits."""

    regex = "[0-9]{1,18}"


register_url_convertor("id", IdConvertor())
register_url_convertor("id64", Id64Convertor())
Handler = Callable[[Request], Awaitable[Response]]


class DeclaredRoute(Route):
    """A Route that carries the roles allowed to use it."""

    roles: frozenset[str]


async def load_principal(request: Request) -> Principal:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return ANONYMOUS
    portal = request.state.portal
    s = portal.settings
    principal = await portal.call(
        accounts.load_session,
        token,
        timedelta(minutes=s.session_idle_minutes),
        timedelta(hours=s.session_max_hours),
    )
    return principal or ANONYMOUS


def authorize(roles: frozenset[str], principal: Principal) -> None:
    if roles & {"public", "device", "client"}:
        return
    if not principal.is_authenticated:
        raise Unauthorized("Please log in to see this page.", code="login_required")
    if principal.role not in roles:
        raise Forbidden("Your account may not use this page.", code="forbidden")


def _guard(fn: Handler, roles: frozenset[str], path: str) -> Handler:
    api = path.startswith("/api/")

    @wraps(fn)
    async def endpoint(request: Request) -> Response:
        principal = ANONYMOUS if api else await load_principal(request)
        request.state.principal = principal
        try:
            authorize(roles, principal)
        except Unauthorized:
            if api or request.method not in SAFE_METHODS:
                raise
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        if not api and request.method not in SAFE_METHODS:
            await check_csrf(request, principal.csrf_token or anonymous_csrf_token(request))
        response = await fn(request)
        new_cookie = getattr(request.state, "new_csrf_cookie", None)
        if new_cookie:
            response.set_cookie(
                ANON_CSRF_COOKIE, new_cookie, httponly=True, secure=True, samesite="lax"
            )
        return response

    return endpoint


class Router:
    """Collects declared routes for one area of the site."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(
        self,
        path: str,
        *,
        roles: str | Iterable[str],
        methods: Iterable[str] = ("GET",),
        name: str | None = None,
    ) -> Callable[[Handler], Handler]:
        allowed = frozenset([roles] if isinstance(roles, str) else roles)
        if not allowed or not allowed <= ROLES:
            raise ValueError(f"{path}: roles must be a non-empty subset of {sorted(ROLES)}")

        def decorate(fn: Handler) -> Handler:
            r = DeclaredRoute(
                path, _guard(fn, allowed, path), methods=list(methods), name=name or fn.__name__
            )
            r.roles = allowed
            self.routes.append(r)
            return fn

        return decorate
