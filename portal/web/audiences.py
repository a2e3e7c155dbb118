"""Landing pages for the two logged-in audiences and the public ledger page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.responses import Response

from portal import ledger, rollups
from portal.models import CHANNELS, STAGES, Insurer
from portal.web.rendering import render
from portal.web.routing import Router

router = Router()


def _insurer_home(conn: Connection, insurer_id: int) -> dict[str, Any]:
    insurer = conn.execute(select(Insurer).where(Insurer.id == insurer_id)).one()
    # Verified only, like the regulator's overview and the rankings.
    return {"insurer": insurer, "totals": rollups.totals(conn, insurer_id, verified_only=True)}


@router.route("/insurer", roles=("insurer",))
async def insurer_home(request: Request) -> Response:
    principal = request.state.principal
    data = await request.state.portal.read(_insurer_home, principal.insurer_id)
    return render(request, "insurer/home.html", data)


@router.route("/regulator", roles=("regulator", "admin"))
async def regulator_home(request: Request) -> Response:
    """The overview; filters come as query parameters, so every view has a URL."""
    stage = request.query_params.get("stage") or None
    channel = request.query_params.get("channel") or None
    stage = stage if stage in STAGES else None
    channel = channel if channel in CHANNELS else None
    rows = await request.state.portal.read(rollups.by_insurer, stage, channel)
    return render(
        request,
        "regulator/home.html",
        {"rows": rows, "stage": stage, "channel": channel},
        block="overview",
    )


def _ledger(conn: Connection) -> dict[str, Any]:
    return {"checkpoint": ledger.latest(conn)}


@router.route("/ledger", roles="public")
async def ledger_page(request: Request) -> Response:
    portal = request.state.portal
    data = await portal.read(_ledger)
    return render(
        request,
        "public/ledger.html",
        {**data, "key": portal.key.as_json(), "origin": portal.key.origin},
    )
