"""The regulator's moderation desk (takedown queue, screening flags) and the public
transparency page. Only the regulator decides; admins have no route here that changes
anything (design.md invariant 7, issue 5: nothing else removes text)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from moderation import flags, takedowns
from portal.errors import NotFound, PortalError
from portal.i18n import translate
from portal.web.rendering import is_htmx, locale_of, render
from portal.web.routing import Router

router = Router()


def _desk(conn: Any) -> dict[str, Any]:
    return {
        "requests": takedowns.queue(conn),
        "flag_count": flags.open_count(conn),
    }


def _int(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise NotFound("There is no such request.", code="no_request")
    return int(raw)


@router.route("/regulator/takedowns", roles="regulator")
async def takedown_queue(request: Request) -> Response:
    data = await request.state.portal.read(_desk)
    return render(request, "regulator/takedowns.html", data)


@router.route("/regulator/takedowns/{request_id}", roles="regulator", methods=("POST",))
async def decide(request: Request) -> Response:
    request_id = _int(request.path_params["request_id"])
    form = await request.form()
    portal = request.state.portal
    decision, note = str(form.get("decision") or ""), str(form.get("note") or "")
    try:
        await portal.write(
            takedowns.decide,
            request_id=request_id,
            user_id=request.state.principal.user_id,
            decision=decision,
            note=note,
        )
        err = None
    except PortalError as e:
        if e.status == 404:
            raise
        err = e
    if not is_htmx(request):
        if err is not None:
            raise err
        return RedirectResponse("/regulator/takedowns", status_code=303)
    item = await portal.read(takedowns.get, request_id)
    history = (await portal.read(takedowns.histories)).get(item.insurer_id) if item else None
    context = {
        "r": item,
        "history": history,
        "error": translate(locale_of(request), err.message, err.params) if err else None,
        "note": note,
    }
    return render(request, "regulator/_takedown.html", context)


async def _screening(
    request: Request, err: PortalError | None = None, flag_id: int | None = None, note: str = ""
) -> Response:
    items = await request.state.portal.read(flags.queue)
    context = {
        "flags": items,
        "error": translate(locale_of(request), err.message, err.params) if err else None,
        "error_flag": flag_id,
        "note": note,
    }
    return render(request, "regulator/screening.html", context, status=err.status if err else 200)


@router.route("/regulator/screening", roles="regulator")
async def screening_queue(request: Request) -> Response:
    return await _screening(request)


@router.route("/regulator/screening/{flag_id}", roles="regulator", methods=("POST",))
async def review_flag(request: Request) -> Response:
    flag_id = _int(request.path_params["flag_id"])
    form = await request.form()
    note = str(form.get("note") or "")
    try:
        request_id = await request.state.portal.write(
            flags.resolve,
            flag_id=flag_id,
            user_id=request.state.principal.user_id,
            outcome=str(form.get("outcome") or ""),
            note=note,
        )
    except PortalError as err:
        if err.status == 404:
            raise
        return await _screening(request, err, flag_id, note)
    # An opened request goes to the takedown queue, where the regulator decides it.
    target = f"/regulator/takedowns#request-{request_id}" if request_id else "/regulator/screening"
    return RedirectResponse(target, status_code=303)


@router.route("/transparency", roles="public")
async def transparency(request: Request) -> Response:
    rows = await request.state.portal.read(takedowns.transparency)
    return render(request, "public/transparency.html", {"rows": rows})
