"""Security headers on every response, and the CSRF checks for state-changing requests."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portal.errors import Forbidden, PayloadTooLarge

# htmx runs under this CSP: no inline script or style (its indicator styles are turned off
# in the htmx-config meta tag), everything from our own origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    "cross-origin-opener-policy": "same-origin",
}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
ANON_CSRF_COOKIE = "gp_csrf"
SESSION_COOKIE = "gp_session"


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers above (and HSTS in production)."""

    def __init__(self, app: ASGIApp, production: bool = False) -> None:
        self.app = app
        self.production = production

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if self.production:
                    headers.setdefault("strict-transport-security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def anonymous_csrf_token(request: Request) -> str:
    """Double-submit token for visitors without a login session."""
    token = request.cookies.get(ANON_CSRF_COOKIE, "")
    if len(token) < 32:
        token = getattr(request.state, "new_csrf_cookie", None) or secrets.token_urlsafe(32)
        request.state.new_csrf_cookie = token
    return token


def check_origin(request: Request) -> None:
    """Browsers tell where a request came from; refuse anything cross-site."""
    origin = request.headers.get("origin")
    if origin is not None:
        expected = f"{request.url.scheme}://{request.url.netloc}"
        if origin != expected:
            raise Forbidden(
                "This request came from another site and was refused.", code="cross_origin"
            )
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Forbidden("This request came from another site and was refused.", code="cross_origin")


async def check_csrf(request: Request, expected: str) -> None:
    check_origin(request)
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden("The form has expired. Reload the page and try again.", code="csrf_failed")


class BodyLimit:
    """Pure ASGI middleware: refuses request bodies above a limit with 413, before any
    handler parses them (forms, JSON, multipart), in one place for every route.

    A declared Content-Length above the limit is answered at once (by `refuse`, which
    renders the error page, or the JSON error under /api/); a body without one (chunked)
    or with one that lies is counted as it arrives, and the read that crosses the limit
    raises PayloadTooLarge inside the handler, which the error handler turns into the
    same 413. Routes that take files may get a larger limit by path prefix (`larger`)."""

    def __init__(
        self,
        app: ASGIApp,
        refuse: Callable[[Request, PayloadTooLarge], Response],
        limit: int = 64 * 1024,
        larger: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.refuse = refuse
        self.limit = limit
        self.larger = larger or {}

    def limit_for(self, path: str) -> int:
        return max(
            [self.limit, *(n for prefix, n in self.larger.items() if path.startswith(prefix))]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length", "").strip()
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            await self.refuse(Request(scope), too_large(limit))(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, counting_receive, send)


def too_large(limit: int) -> PayloadTooLarge:
    if limit == 64 * 1024:
        return PayloadTooLarge("The request body is larger than 64 KiB.")
    return PayloadTooLarge("The request is too large.")
