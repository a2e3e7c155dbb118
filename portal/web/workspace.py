"""The insurer's workspace: the inbox, one rating with its reply thread, takedown requests.

An insurer user only ever sees its own company's ratings: every query is scoped by the
principal's insurer, and a rating of another insurer is "not found" (404), never 403,
so its existence is not revealed. Forms work without JavaScript (post, then redirect);
with htmx the reply and takedown blocks are swapped in place.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from moderation import takedowns
from portal import inbox, replies
from portal.errors import NotFound, PortalError
from portal.i18n import translate
from portal.models import CHANNELS, STAGES
from portal.web.rendering import is_htmx, locale_of, render
from portal.web.routing import Router

router = Router()


def _inbox(conn: Any, insurer_id: int, f: inbox.InboxFilter) -> dict[str, Any]:
    return {**inbox.choices(conn, insurer_id), "page": inbox.inbox(conn, insurer_id, f)}


@router.route("/insurer/inbox", roles="insurer")
async def inbox_page(request: Request) -> Response:
    f = inbox.InboxFilter.parse(request.query_params)
    data = await request.state.portal.read(_inbox, request.state.principal.insurer_id, f)
    context = {**data, "f": f, "stages": STAGES, "channels": CHANNELS}
    return render(request, "insurer/inbox.html", context, block="inbox")


def _rating(conn: Any, insurer_id: int, rating_id: str) -> dict[str, Any]:
    item = inbox.item(conn, insurer_id, rating_id)
    if item is None:
        raise NotFound("There is no such rating.", code="no_rating")
    return {
        "item": item,
        "thread": replies.threads(conn, [rating_id]).get(rating_id, []),
        "requests": takedowns.for_rating(conn, rating_id),
    }


async def _rating_page(
    request: Request,
    *,
    block: str | None = None,
    err: PortalError | None = None,
    form: dict[str, str] | None = None,
    done: str | None = None,
) -> Response:
    principal = request.state.principal
    rating_id = request.path_params["rating_id"]
    data = await request.state.portal.read(_rating, principal.insurer_id, rating_id)
    error = translate(locale_of(request), err.message, err.params) if err else None
    reply = next((t for t in data["thread"] if t.author == "insurer"), None)
    context = {
        **data,
        "reasons_list": takedowns.REASONS,
        "error": error,
        "error_field": err.field if err else None,
        "form": form or {},
        "reply": reply,
        "done": done,
    }
    # htmx leaves 4xx unswapped: a fragment that reports a refusal is still a 200.
    status = err.status if err and not (block and is_htmx(request)) else 200
    return render(request, "insurer/rating.html", context, block=block, status=status)


@router.route("/insurer/ratings/{rating_id}", roles="insurer")
async def rating_page(request: Request) -> Response:
    return await _rating_page(request)


def _fields(form: Any, *names: str) -> dict[str, str]:
    return {n: str(form.get(n) or "") for n in names}


@router.route("/insurer/ratings/{rating_id}/reply", roles="insurer", methods=("POST",))
async def post_reply(request: Request) -> Response:
    principal = request.state.principal
    rating_id = request.path_params["rating_id"]
    form = _fields(await request.form(), "body", "change_made")
    try:
        await request.state.portal.write(
            replies.post,
            insurer_id=principal.insurer_id,
            user_id=principal.user_id,
            rating_id=rating_id,
            body=form["body"],
            change_made=form["change_made"] if form["change_made"].strip() else None,
        )
    except PortalError as err:
        if err.status == 404:
            raise
        return await _rating_page(request, block="thread", err=err, form=form)
    if is_htmx(request):
        return await _rating_page(request, block="thread", done="reply")
    return RedirectResponse(f"/insurer/ratings/{rating_id}#thread", status_code=303)


@router.route("/insurer/ratings/{rating_id}/takedown", roles="insurer", methods=("POST",))
async def request_takedown(request: Request) -> Response:
    principal = request.state.principal
    rating_id = request.path_params["rating_id"]
    form = _fields(await request.form(), "reason", "explanation")
    try:
        await request.state.portal.write(
            takedowns.request,
            insurer_id=principal.insurer_id,
            user_id=principal.user_id,
            rating_id=rating_id,
            reason=form["reason"],
            explanation=form["explanation"],
        )
    except PortalError as err:
        if err.status == 404:
            raise
        return await _rating_page(request, block="takedown", err=err, form=form)
    if is_htmx(request):
        return await _rating_page(request, block="takedown", done="takedown")
    return RedirectResponse(f"/insurer/ratings/{rating_id}#takedown", status_code=303)


@router.route("/insurer/takedowns", roles="insurer")
async def my_takedowns(request: Request) -> Response:
    insurer_id = request.state.principal.insurer_id
    rows = await request.state.portal.read(takedowns.of_insurer, insurer_id)
    return render(request, "insurer/takedowns.html", {"requests": rows})
