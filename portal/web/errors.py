"""One error handler: JSON for /api/ paths, a page chosen by status for everything else."""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portal.db import unavailable
from portal.errors import PortalError, Unavailable
from portal.i18n import N_, translate
from portal.web.rendering import locale_of, render

log = logging.getLogger("portal")
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
STATUS_MESSAGES = {
    400: N_("The request could not be understood."),
    401: N_("Please log in to continue."),
    403: N_("You may not do this."),
    404: N_("This page does not exist."),
    405: N_("This method is not allowed here."),
    413: N_("The request is too large."),
    500: N_("Something went wrong on our side. It has been logged; please try again."),
}
DATABASE_OUT = N_("The service is briefly unavailable. Please try again in a few seconds.")
RETRY_AFTER = 5  # seconds: a database restart or failover takes about this long


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    params: dict[str, object] | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    locale = locale_of(request)
    text = translate(locale, message, params)
    if request.url.path.startswith("/api/"):
        body = {"error": {"code": code, "message": text, "field": field}}
        return JSONResponse(body, status_code=status, headers=headers)
    return render(
        request,
        "error.html",
        {"status": status, "message": text, "code": code},
        status=status,
        headers=headers,
    )


async def portal_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PortalError)
    headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else {}
    if exc.status == 401 and request.url.path.startswith("/api/"):
        headers["WWW-Authenticate"] = 'Bearer realm="gongping"'  # RFC 6750
    return error_response(
        request, exc.status, exc.code, exc.message, exc.params, exc.field, headers
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = STATUS_MESSAGES.get(exc.status_code, STATUS_MESSAGES[400])
    return error_response(
        request,
        exc.status_code,
        STATUS_CODES.get(exc.status_code, "error"),
        message,
        headers=exc.headers,
    )


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, "internal_error", STATUS_MESSAGES[500])


async def database_error(request: Request, exc: Exception) -> Response:
    """The database is out (down, restarting, pool exhausted): 503 with Retry-After, so
    clients retry with the same idempotency key. Any other database error is a bug: 500."""
    if not unavailable(exc):
        return await server_error(request, exc)
    first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, first_line)
    return await portal_error(request, Unavailable(DATABASE_OUT, retry_after=RETRY_AFTER))


def refuse(request: Request, exc: PortalError) -> Response:
    """An error answered outside the routes (e.g. by BodyLimit), in the usual shape."""
    return error_response(request, exc.status, exc.code, exc.message, exc.params, exc.field)


HANDLERS = {
    PortalError: portal_error,
    HTTPException: http_error,
    SQLAlchemyError: database_error,
    Exception: server_error,
}
