"""Counter device API (channel-api.md "Counter devices"): thin handlers over the adapter."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portal.channels import counter
from portal.web.api import bearer_token, read_json, required_text, text_field, time_field
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
    device = await _device(request)
    body, _ = await read_json(request)
    receipt = await request.state.portal.call(
        counter.rate_session,
        device,
        required_text(body, "session_id"),
        required_text(body, "level"),
        required_text(body, "idempotency_key"),
        time_field(body, "occurred_at"),
    )
    return JSONResponse(receipt.as_json(), status_code=200 if receipt.replayed else 201)
