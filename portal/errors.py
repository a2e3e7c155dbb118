"""The domain's small exception hierarchy. Messages are msgids, translated when shown."""

from __future__ import annotations

from typing import Any


class PortalError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, field: str | None = None, **params: Any
    ) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params
        self.field = field
        if code:
            self.code = code


class BadRequest(PortalError):
    status, code = 400, "bad_request"


class Unauthorized(PortalError):
    status, code = 401, "unauthorized"


class Forbidden(PortalError):
    status, code = 403, "forbidden"


class NotFound(PortalError):
    status, code = 404, "not_found"


class Conflict(PortalError):
    status, code = 409, "conflict"


class PayloadTooLarge(PortalError):
    status, code = 413, "payload_too_large"


class Invalid(PortalError):
    """Well-formed but invalid input (unknown staff, score out of range, ...)."""

    status, code = 422, "invalid"


class RateLimited(PortalError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Unavailable(PortalError):
    """A component the request needs (the database) is briefly out: retry later."""

    status, code = 503, "unavailable"

    def __init__(self, message: str, *, retry_after: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
