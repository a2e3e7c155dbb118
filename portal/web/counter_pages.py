"""Counter channel pages for insurers (devices, staff, signals) and the regulator."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from portal import audit, counter_reports, credentials
from portal.errors import Invalid, NotFound
from portal.models import Branch, Device, Insurer
from portal.web.rendering import render
from portal.web.routing import Router

router = Router()


def _insurer_counter(conn: Connection, insurer_id: int) -> dict[str, Any]:
    return {
        "insurer": conn.execute(select(Insurer).where(Insurer.id == insurer_id)).one(),
        "branches": conn.execute(
            select(Branch.code, Branch.name)
            .where(Branch.insurer_id == insurer_id)
            .order_by(Branch.name)
        ).all(),
        "devices": counter_reports.devices(conn, insurer_id),
        "staff": counter_reports.staff(conn, insurer_id),
        "by_branch": counter_reports.completion_by_branch(conn, insurer_id),
        "flags": counter_reports.flags(conn, insurer_id),
        "jumps": counter_reports.satisfied_jumps(conn, insurer_id),
        "days": counter_reports.DAYS,
    }


@router.route("/insurer/counter", roles="insurer")
async def insurer_counter(request: Request) -> Response:
    principal = request.state.principal
    data = await request.state.portal.read(_insurer_counter, principal.insurer_id)
    return render(request, "insurer/counter.html", data)


def _register(
    conn: Connection, insurer_id: int, branch: str, label: str, actor: str
) -> tuple[int, str]:
    code = conn.execute(select(Insurer.code).where(Insurer.id == insurer_id)).scalar_one()
    label = " ".join(label.split())[:50]
    device_id, token = credentials.add_device(conn, code, branch, label or None)
    audit.log(conn, actor, "device.add", f"device:{device_id}", branch=branch)
    return device_id, token


@router.route("/insurer/devices", roles="insurer", methods=("POST",))
async def register_device(request: Request) -> Response:
    """Register an evaluator for one of our branches; the token is shown once, here."""
    principal = request.state.principal
    form = await request.form()
    portal = request.state.portal
    device_id, token = await portal.write(
        _register,
        principal.insurer_id,
        str(form.get("branch", ""))[:32],
        str(form.get("label", "")),
        f"user:{principal.username}",
    )
    data = await portal.read(_insurer_counter, principal.insurer_id)
    return render(
        request,
        "insurer/counter.html",
        {**data, "new_device": {"id": device_id, "token": token}},
        status=201,
    )


def _revoke(conn: Connection, insurer_id: int, device_id: int, actor: str) -> None:
    from datetime import UTC, datetime

    done = conn.execute(
        update(Device)
        .where(Device.id == device_id, Device.insurer_id == insurer_id, Device.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    if done.rowcount != 1:
        raise NotFound("There is no active device %(id)s of your company.", id=device_id)
    audit.log(conn, actor, "device.revoke", f"device:{device_id}")


@router.route("/insurer/devices/{device_id:id}/revoke", roles="insurer", methods=("POST",))
async def revoke_device(request: Request) -> Response:
    principal = request.state.principal
    await request.state.portal.write(
        _revoke,
        principal.insurer_id,
        request.path_params["device_id"],
        f"user:{principal.username}",
    )
    return RedirectResponse("/insurer/counter#devices", status_code=303)


def _regulator_counter(conn: Connection) -> dict[str, Any]:
    return {
        "by_insurer": counter_reports.completion_by_insurer(conn),
        "by_branch": counter_reports.completion_by_branch(conn)[:20],
        "flags": counter_reports.flags(conn),
        "jumps": counter_reports.satisfied_jumps(conn),
        "days": counter_reports.DAYS,
    }


@router.route("/regulator/counter", roles=("regulator", "admin"))
async def regulator_counter(request: Request) -> Response:
    data = await request.state.portal.read(_regulator_counter)
    return render(request, "regulator/counter.html", data)


def check_branch(code: str) -> str:
    if not code:
        raise Invalid("Choose a branch.", field="branch", code="missing_branch")
    return code
