"""JSON API plumbing shared by the channel endpoints: body parsing, fields, credentials."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.requests import Request

from portal.errors import BadRequest, PayloadTooLarge, Unauthorized

MAX_BODY = 64 * 1024  # channel-api.md: 413 above 64 KiB


async def read_body(request: Request) -> bytes:
    """The raw body, refused early when it is too large (whatever Content-Length says)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge("The request body is larger than 64 KiB.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLarge("The request body is larger than 64 KiB.")
    return body


async def read_json(request: Request) -> tuple[dict[str, Any], bytes]:
    """A JSON object body (and its raw bytes, which signatures are computed over)."""
    raw = await read_body(request)
    return read_json_bytes(request, raw), raw


def read_json_bytes(request: Request, raw: bytes) -> dict[str, Any]:
    """Parse a body already read (e.g. after its signature was checked)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadRequest("Send the body as application/json.", code="unsupported_media_type")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The body is not valid UTF-8 JSON.", code="malformed_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", code="malformed_json")
    return body


def text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(
                "The field %(name)s is required.", field=name, code="missing_field", name=name
            )
        return None
    if not isinstance(value, str):
        raise BadRequest(
            "The field %(name)s must be a string.", field=name, code="wrong_type", name=name
        )
    return value


def required_text(body: dict[str, Any], name: str) -> str:
    value = text_field(body, name)
    assert value is not None
    return value


def bool_field(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise BadRequest(
            "The field %(name)s must be true or false.", field=name, code="wrong_type", name=name
        )
    return value


def int_field(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if type(value) is not int:  # bool is an int subclass; true is not a scale
        raise BadRequest(
            "The field %(name)s must be an integer.", field=name, code="wrong_type", name=name
        )
    return value


def time_field(body: dict[str, Any], name: str) -> datetime:
    """ISO 8601 with an offset; a missing offset is a malformed request (400)."""
    raw = required_text(body, name)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(
            "The field %(name)s is not an ISO 8601 time.",
            field=name,
            code="malformed_time",
            name=name,
        ) from None
    if value.tzinfo is None:
        raise BadRequest(
            "The field %(name)s needs a time zone offset, e.g. +08:00.",
            field=name,
            code="missing_offset",
            name=name,
        )
    return value


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Send the device token as “Authorization: Bearer <token>”.", code="missing_token"
        )
    return token.strip()
