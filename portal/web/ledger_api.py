"""Public ledger endpoints (channel-api.md "Ledger formats"): anyone can verify."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portal import ledger
from portal.errors import BadRequest, NotFound
from portal.web.routing import Router

router = Router()


def _int_param(request: Request, name: str) -> int:
    raw = request.query_params.get(name, "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest(
            "Query parameter %(name)s must be a whole number.",
            field=name,
            code="invalid_parameter",
            name=name,
        )
    return int(raw)


@router.route("/api/v1/checkpoints/latest", roles="public")
async def latest_checkpoint(request: Request) -> Response:
    portal = request.state.portal
    cp = await portal.read(ledger.latest)
    if cp is None:
        raise NotFound("No checkpoint has been signed yet.", code="no_checkpoint")
    return JSONResponse(ledger.checkpoint_json(cp, portal.key.origin))


@router.route("/api/v1/checkpoints/key", roles="public")
async def checkpoint_key(request: Request) -> Response:
    return JSONResponse(request.state.portal.key.as_json())


@router.route("/api/v1/checkpoints/consistency", roles="public")
async def consistency(request: Request) -> Response:
    first, second = _int_param(request, "from"), _int_param(request, "to")
    proof = await request.state.portal.read(ledger.consistency, first, second)
    return JSONResponse({"from": first, "to": second, "proof": proof})


@router.route("/api/v1/checkpoints/{tree_size:id64}", roles="public")
async def checkpoint_by_size(request: Request) -> Response:
    portal = request.state.portal
    size = request.path_params["tree_size"]

    cp = await portal.read(ledger.by_size, size)
    if cp is None:
        raise NotFound("There is no checkpoint of tree size %(size)s.", size=size)
    return JSONResponse(ledger.checkpoint_json(cp, portal.key.origin))


@router.route("/api/v1/ratings/{rating_id}/proof", roles="public")
async def inclusion_proof(request: Request) -> Response:
    portal = request.state.portal
    body = await portal.read(ledger.inclusion, request.path_params["rating_id"])
    body["checkpoint"] = ledger.checkpoint_json(body["checkpoint"], portal.key.origin)
    return JSONResponse(body)
