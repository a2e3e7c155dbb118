"""The web rating channel's pages: pick, rate, receipt, ledger proof, dev SMS inbox.

URLs: GET /rate (pick the insurer and stage), GET /rate?insurer=TA&stage=claim (the
form), POST /rate (submit), POST /rate/code (send a code; an htmx fragment, or the
whole page without JavaScript), GET /receipt/{id}?t=TOKEN, GET /ledger/proof/{id},
GET /dev/inbox (not in production).
"""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import Connection, select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from portal import ledger, replies
from portal.channels import web
from portal.channels.web import FormErrors, WebForm
from portal.errors import NotFound, PortalError
from portal.i18n import N_, translate
from portal.models import STAGES, Branch, Insurer, Rating, SmsMessage
from portal.verification import CODE_TTL, CodeSent
from portal.web.rendering import is_htmx, locale_of, render
from portal.web.routing import Router

router = Router()
FIELDS = ("insurer", "stage", "score", "text", "branch", "staff_no", "policy_no", "phone", "code")
SMS_BODY = N_(
    "Gongping: your verification code is %(code)s. It is valid for %(minutes)s minutes. "
    "Do not share it with anyone."
)
PRIVATE = {"Cache-Control": "no-store"}  # receipts and codes stay out of shared caches


def _form_data(conn: Connection, code: str) -> dict[str, Any]:
    """The insurer and its branches for the form; all insurers when it is unknown."""
    insurer = conn.execute(
        select(Insurer.id, Insurer.code, Insurer.name).where(Insurer.code == code)
    ).first()
    if insurer is None:
        insurers = conn.execute(select(Insurer.code, Insurer.name).order_by(Insurer.code)).all()
        return {"insurer": None, "insurers": insurers, "branches": []}
    branches = conn.execute(
        select(Branch.code, Branch.name)
        .where(Branch.insurer_id == insurer.id)
        .order_by(Branch.name)
    ).all()
    return {"insurer": insurer, "insurers": [], "branches": branches}


def _messages(request: Request, err: PortalError | None) -> list[dict[str, Any]]:
    """Translated messages, each tied to a form field where there is one."""
    if err is None:
        return []
    locale = locale_of(request)
    errors = err.errors if isinstance(err, FormErrors) else [err]
    return [
        {
            "field": e.field if e.field in FIELDS else None,
            "message": translate(locale, e.message, e.params),
        }
        for e in errors
    ]


def _insurer_code(form: WebForm) -> str:
    """Only a well-formed code reaches a query (PostgreSQL refuses NUL bytes, say)."""
    try:
        return web.check_insurer(form.insurer)
    except PortalError:
        return ""


async def _page(
    request: Request,
    form: WebForm,
    *,
    err: PortalError | None = None,
    sent: CodeSent | None = None,
    block: str | None = None,
) -> Response:
    """The picker when the insurer is unknown, else the rating form (or one of its blocks)."""
    data = await request.state.portal.read(_form_data, _insurer_code(form))
    if data["insurer"] is None and form.insurer.strip() and err is None:
        err = NotFound(
            "Unknown insurer “%(value)s”.",
            field="insurer",
            code="unknown_insurer",
            value=form.insurer.strip()[:16].replace("\x00", ""),
        )
    context = _context(request, data, form, err, sent, code_step=block == "verify")
    template = "rate/form.html" if data["insurer"] else "rate/pick.html"
    # htmx leaves 4xx responses unswapped by default (and base.html's config is shared):
    # a fragment that reports a refusal is still a 200 to htmx.
    status = 200 if err is None or (block and is_htmx(request)) else err.status
    retry = getattr(err, "retry_after", None)
    headers = PRIVATE | ({"Retry-After": str(retry)} if retry else {})
    return render(request, template, context, block=block, status=status, headers=headers)


def _context(
    request: Request,
    data: dict[str, Any],
    form: WebForm,
    err: PortalError | None,
    sent: CodeSent | None,
    *,
    code_step: bool,
) -> dict[str, Any]:
    errors = _messages(request, err)
    return {
        **data,
        "form": form,
        "stages": STAGES,
        "errors": errors,
        "field_errors": {e["field"]: e["message"] for e in reversed(errors) if e["field"]},
        "sent": sent,
        "minutes": int(CODE_TTL.total_seconds() // 60),
        "code_step": code_step,  # the "send code" answer: messages go in its block
        "focus": _focus(errors, sent, code_step=code_step),
    }


def _focus(errors: list[dict[str, Any]], sent: CodeSent | None, *, code_step: bool) -> str:
    """Where the keyboard focus goes: the new code field, the first problem, or nothing."""
    if sent is not None:
        return "code"
    if not errors:
        return ""
    if not code_step:
        return "error-summary"
    return next((e["field"] for e in errors if e["field"]), "verify-alert")


@router.route("/rate", roles="public")
async def rate_page(request: Request) -> Response:
    """Without an insurer: pick one and the stage. With one: the form, stage preselected."""
    q = request.query_params
    form = WebForm(insurer=q.get("insurer", ""), stage=q.get("stage", ""), nonce=web.new_nonce())
    return await _page(request, form)


@router.route("/rate", roles="public", methods=("POST",))
async def submit_rating(request: Request) -> Response:
    form = WebForm.from_fields(await request.form())
    portal = request.state.portal
    try:
        done = await portal.call(
            web.submit, form, portal.phone_key, portal.settings.clock_skew_seconds
        )
    except PortalError as err:
        codes = {e.code for e in (err.errors if isinstance(err, FormErrors) else [err])}
        if codes & {"form_expired", "bad_nonce"}:  # a fresh form id lets them just resend
            form = WebForm(**{**form.__dict__, "nonce": web.new_nonce()})
        return await _page(request, form, err=err)
    return RedirectResponse(done.url, status_code=303)


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.route("/rate/code", roles="public", methods=("POST",))
async def send_code(request: Request) -> Response:
    """The "send code" button: hx-post swaps the verification block; without JS, the page."""
    form = WebForm.from_fields(await request.form())
    portal = request.state.portal
    locale = locale_of(request)
    minutes = int(CODE_TTL.total_seconds() // 60)

    def compose(code: str) -> str:
        return translate(locale, SMS_BODY, {"code": code, "minutes": minutes})

    try:
        sent = await portal.call(
            web.send_code, form, portal.phone_key, portal.sms, _ip(request), compose
        )
    except PortalError as err:
        return await _page(request, form, err=err, block="verify")
    return await _page(request, form, sent=sent, block="verify")


def _receipt(conn: Connection, rating_id: str, token: str) -> dict[str, Any]:
    data = web.receipt(conn, rating_id, token)
    return {"r": data, "thread": replies.threads(conn, [rating_id]).get(rating_id, [])}


async def receipt_context(
    request: Request, rating_id: str, token: str, *, err: PortalError | None = None, body: str = ""
) -> dict[str, Any]:
    """The receipt, its reply thread, and the follow-up form's state."""
    data = await request.state.portal.read(_receipt, rating_id, token)
    error = translate(locale_of(request), err.message, err.params) if err else None
    return {**data, "token": token, "error": error, "body": body}


@router.route("/receipt/{rating_id}", roles="public")
async def receipt_page(request: Request) -> Response:
    context = await receipt_context(
        request, request.path_params["rating_id"], request.query_params.get("t", "")
    )
    return render(request, "rate/receipt.html", context, headers=PRIVATE)


def signed_note(cp: Any, origin: str) -> str:
    """The C2SP signed note: body, blank line, "— origin base64(key id ‖ signature)"."""
    sig = base64.b64encode(bytes.fromhex(cp.key_id) + base64.b64decode(cp.signature)).decode()
    return f"{cp.note}\n\u2014 {origin} {sig}\n"


def _proof(conn: Connection, rating_id: str) -> dict[str, Any]:
    if not web.RATING_ID.match(rating_id):
        raise NotFound("There is no rating %(id)s.", id=rating_id[:40].replace("\x00", ""))
    try:
        return {"pending": False, **ledger.inclusion(conn, rating_id)}
    except NotFound as err:
        if err.code != "not_yet_sequenced":
            raise
    leaf = conn.execute(select(Rating.leaf_hash).where(Rating.id == rating_id)).scalar_one()
    return {"pending": True, "id": rating_id, "leaf_hash": leaf}


@router.route("/ledger/proof/{rating_id}", roles="public")
async def proof_page(request: Request) -> Response:
    """Public, like every proof. htmx polls the waiting block until a checkpoint covers it."""
    portal = request.state.portal
    data = await portal.read(_proof, request.path_params["rating_id"])
    if not data["pending"]:
        data["signed_note"] = signed_note(data["checkpoint"], portal.key.origin)
    return render(request, "rate/proof.html", data, block="proof")


def _inbox(conn: Connection) -> list[Any]:
    return list(conn.execute(select(SmsMessage).order_by(SmsMessage.id.desc()).limit(30)))


@router.route("/dev/inbox", roles="public")
async def dev_inbox(request: Request) -> Response:
    """What the development sender 'sent'. It does not exist in production."""
    portal = request.state.portal
    if portal.settings.environment == "production" or portal.settings.sms_sender != "dev":
        raise HTTPException(404)
    messages = await portal.read(_inbox)
    return render(request, "rate/inbox.html", {"messages": messages}, headers=PRIVATE)
