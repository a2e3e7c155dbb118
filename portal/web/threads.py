"""Public reply threads: a reply's edit history, and the reviewer's one follow-up.

The follow-up is posted from the receipt page; the receipt link's token (only its hash
is stored) is what proves the poster wrote the rating.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from portal import replies
from portal.channels import web
from portal.errors import NotFound, PortalError
from portal.web.rate import PRIVATE, receipt_context
from portal.web.rendering import render
from portal.web.routing import Router

router = Router()


def _history(conn: Connection, reply_id: int) -> dict[str, Any]:
    versions = replies.history(conn, reply_id)
    if not versions:
        raise NotFound("There is no such reply.", code="no_reply")
    return {"versions": versions, "reply_id": reply_id}


@router.route("/replies/{reply_id:id}/history", roles="public")
async def reply_history(request: Request) -> Response:
    data = await request.state.portal.read(_history, request.path_params["reply_id"])
    return render(request, "public/reply_history.html", data, block="history")


def _follow_up(conn: Connection, rating_id: str, token: str, body: str) -> int:
    web.receipt(conn, rating_id, token)  # only the receipt's holder; else "no receipt"
    return replies.follow_up(conn, rating_id=rating_id, body=body)


@router.route("/receipt/{rating_id}/follow-up", roles="public", methods=("POST",))
async def follow_up(request: Request) -> Response:
    rating_id = request.path_params["rating_id"]
    form = await request.form()
    token, body = str(form.get("t") or ""), str(form.get("body") or "")
    portal = request.state.portal
    await portal.read(web.receipt, rating_id, token)  # a wrong token never takes a write lock
    try:
        await portal.write(_follow_up, rating_id, token, body)
    except PortalError as err:
        if err.status == 404:
            raise
        context = await receipt_context(request, rating_id, token, err=err, body=body)
        return render(request, "rate/receipt.html", context, status=err.status, headers=PRIVATE)
    return RedirectResponse(
        f"/receipt/{rating_id}?t={quote(token, safe='')}#thread", status_code=303
    )
