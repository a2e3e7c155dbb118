"""Phone channel pages: the insurer's API clients and survey rates, its return-visit
campaign (progress, unreachable numbers to correct, per-agent results, fraud signals),
and the regulator's survey rates per insurer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from portal import audit, credentials, phone_reports, visits
from portal.errors import PortalError
from portal.i18n import translate
from portal.models import Insurer
from portal.stars import china_today
from portal.web.rendering import locale_of, render
from portal.web.routing import Router

router = Router()


def _insurer(conn: Connection, insurer_id: int) -> Any:
    return conn.execute(select(Insurer).where(Insurer.id == insurer_id)).one()


def _phone(conn: Connection, insurer_id: int) -> dict[str, Any]:
    today = china_today()
    totals = phone_reports.survey_by_insurer(conn, today, insurer_id)
    return {
        "insurer": _insurer(conn, insurer_id),
        "clients": credentials.clients(conn, insurer_id),
        "agents": phone_reports.survey_by_agent(conn, insurer_id, today),
        "total": totals[0] if totals else None,
        "days": phone_reports.DAYS,
    }


async def _phone_page(request: Request, status: int = 200, **extra: Any) -> Response:
    principal = request.state.principal
    data = await request.state.portal.read(_phone, principal.insurer_id)
    return render(request, "insurer/phone.html", data | extra, status=status)


@router.route("/insurer/phone", roles="insurer")
async def insurer_phone(request: Request) -> Response:
    return await _phone_page(request)


def _add_client(conn: Connection, insurer_id: int, actor: str) -> tuple[str, str]:
    code = _insurer(conn, insurer_id).code
    client_id, secret = credentials.add_client(conn, code)
    audit.log(conn, actor, "client.add", client_id, insurer=code)
    return client_id, secret


@router.route("/insurer/clients", roles="insurer", methods=("POST",))
async def add_client(request: Request) -> Response:
    """A call-centre client for our company; the secret is shown once, here."""
    principal = request.state.principal
    client_id, secret = await request.state.portal.write(
        _add_client, principal.insurer_id, f"user:{principal.username}"
    )
    shown = {"client_id": client_id, "secret": secret, "rotated": False}
    return _no_store(await _phone_page(request, 201, new_secret=shown))


def _no_store(response: Response) -> Response:
    """A page showing a secret is never kept by the browser or a proxy (a reload or the
    back button must not show it again from a cache)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _rotate(conn: Connection, insurer_id: int, client_id: str, actor: str) -> str:
    secret = credentials.rotate_client(conn, client_id, insurer_id)
    audit.log(conn, actor, "client.rotate", client_id)
    return secret


@router.route("/insurer/clients/{client_id}/rotate", roles="insurer", methods=("POST",))
async def rotate_client(request: Request) -> Response:
    principal = request.state.principal
    client_id = request.path_params["client_id"]
    secret = await request.state.portal.write(
        _rotate, principal.insurer_id, client_id, f"user:{principal.username}"
    )
    shown = {"client_id": client_id, "secret": secret, "rotated": True}
    return _no_store(await _phone_page(request, new_secret=shown))


def _revoke(conn: Connection, insurer_id: int, client_id: str, actor: str) -> None:
    credentials.revoke_client(conn, client_id, insurer_id)
    audit.log(conn, actor, "client.revoke", client_id)


@router.route("/insurer/clients/{client_id}/revoke", roles="insurer", methods=("POST",))
async def revoke_client(request: Request) -> Response:
    principal = request.state.principal
    await request.state.portal.write(
        _revoke,
        principal.insurer_id,
        request.path_params["client_id"],
        f"user:{principal.username}",
    )
    return RedirectResponse("/insurer/phone#clients", status_code=303)


def _campaign(conn: Connection, insurer_id: int) -> dict[str, Any]:
    today = china_today()
    return {
        "insurer": _insurer(conn, insurer_id),
        "progress": visits.counts(conn, insurer_id, today),
        "uncalendared": visits.uncalendared_years(conn, insurer_id, today),
        "agents": phone_reports.visits_by_agent(conn, insurer_id),
        "unreachable": phone_reports.unreachable(conn, insurer_id),
        "agent_phones": phone_reports.agent_phone_signals(conn, insurer_id),
        "shared_phones": phone_reports.shared_phone_signals(conn, insurer_id),
        "shared_min": phone_reports.SHARED_PHONE_CUSTOMERS,
    }


@router.route("/insurer/visits", roles="insurer")
async def insurer_visits(request: Request) -> Response:
    principal = request.state.principal
    data = await request.state.portal.read(_campaign, principal.insurer_id)
    return render(request, "insurer/visits.html", data)


def _correct(
    conn: Connection, insurer_id: int, task_id: int, phone: str, key: bytes, actor: str
) -> None:
    task = visits.correct_phone(conn, insurer_id, task_id, phone, key, china_today())
    audit.log(conn, actor, "visit.correct_phone", f"visit:{task_id}", cycle=task.cycle)


@router.route("/insurer/visits/{task_id:id}/phone", roles="insurer", methods=("POST",))
async def correct_phone(request: Request) -> Response:
    """A corrected number for an unreachable visit reopens it (a new cycle from today)."""
    principal = request.state.principal
    portal = request.state.portal
    task_id = request.path_params["task_id"]
    form = await request.form()
    try:
        await portal.write(
            _correct,
            principal.insurer_id,
            task_id,
            str(form.get("phone", ""))[:40],
            portal.phone_key,
            f"user:{principal.username}",
        )
    except PortalError as err:
        data = await portal.read(_campaign, principal.insurer_id)
        message = translate(locale_of(request), err.message, err.params)
        error = {"task_id": task_id, "message": message}
        return render(request, "insurer/visits.html", data | {"error": error}, status=err.status)
    return RedirectResponse("/insurer/visits?corrected=1#unreachable", status_code=303)


@router.route("/regulator/phone", roles=("regulator", "admin"))
async def regulator_phone(request: Request) -> Response:
    rows = await request.state.portal.read(
        lambda conn: phone_reports.survey_by_insurer(conn, china_today())
    )
    return render(request, "regulator/phone.html", {"by_insurer": rows, "days": phone_reports.DAYS})
