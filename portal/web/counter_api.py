"""Counter device API (channel-api.md "Counter devices"): thin handlers over the adapter."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portal.channels import counter
from portal.web.api import (
    bearer_token,
    read_body,
    read_json,
    read_json_bytes,
    required_text,
    text_field,
    time_field,
)
from portal.web.routing import Router

router = Router()


async def _device(request: Request) -> object:
    return await request.state.portal.call(counter.authenticate, bearer_token(request))


@router.route("/api/v1/counter/device", roles="device")
async def device_info(request: Request) -> Response:
    """Addition to the contract: the paired device's branch and its staff with stars."""
    device = await _device(request)
    info = await request.state.portal.read(counter.device_info, device)
    return JSONResponse(info)


@router.route("/api/v1/counter/sessions", roles="device", methods=("POST",))
async def open_session(request: Request) -> Response:
    device = await _device(request)
    body, _ = await read_json(request)
    opened = await request.state.portal.call(
        counter.open_session,
        device,
        required_text(body, "staff_no"),
        required_text(body, "stage"),
        text_field(body, "ticket", required=False),
        required_text(body, "idempotency_key"),
    )
    return JSONResponse(opened.as_json(), status_code=200 if opened.replayed else 201)


@router.route("/api/v1/counter/ratings", roles="device", methods=("POST",))
async def rate(request: Request) -> Response:
    token = bearer_token(request)
    raw = await read_body(request)

    def fields() -> tuple[str, str, str, datetime]:
        body = read_json_bytes(request, raw)
        return (
            required_text(body, "session_id"),
            required_text(body, "level"),
            required_text(body, "idempotency_key"),
            time_field(body, "occurred_at"),
        )

    # One unit of the writer: the token is checked first (401 before any 400), then the
    # body, then the press, all in one transaction.
    receipt = await request.state.portal.commit(counter.press, token, fields)
    return JSONResponse(receipt.as_json(), status_code=200 if receipt.replayed else 201)
