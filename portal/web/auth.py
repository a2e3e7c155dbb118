"""Login and logout for insurer, regulator and admin users."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from portal import accounts
from portal.errors import PortalError
from portal.i18n import N_, translate
from portal.web.public import safe_next
from portal.web.rendering import is_htmx, locale_of, render
from portal.web.routing import Router
from portal.web.security import SESSION_COOKIE

router = Router()
HOME_FOR_ROLE = {"regulator": "/regulator", "insurer": "/insurer", "admin": "/regulator"}


@router.route("/login", roles="public")
async def login_form(request: Request) -> Response:
    target = safe_next(request.query_params.get("next"))
    return render(request, "auth/login.html", {"next": target, "asked": target != "/"})


@router.route("/login", roles="public", methods=("POST",), name="login")
async def login(request: Request) -> Response:
    form = await request.form()
    username = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[:1024]
    target = safe_next(str(form.get("next", "")))
    portal = request.state.portal
    ip = request.client.host if request.client else "unknown"
    try:
        user = await portal.call(accounts.authenticate, username, password, ip)
    except PortalError as err:  # rate limited
        return _form_error(request, username, target, err.message, err.params, err.status)
    if user is None:
        message = N_("Wrong user name or password.")
        return _form_error(request, username, target, message, {}, 401)
    previous = request.cookies.get(SESSION_COOKIE, "")
    token = await portal.write(accounts.start_session, user.id, previous)
    response = RedirectResponse(target if target != "/" else HOME_FOR_ROLE[user.role], 303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        secure=True,
        samesite="lax",
        max_age=portal.settings.session_max_hours * 3600,
    )
    return response


def _form_error(
    request: Request,
    username: str,
    target: str,
    message: str,
    params: dict[str, object],
    status: int,
) -> Response:
    error = translate(locale_of(request), message, params)
    return render(
        request,
        "auth/login.html",
        {"error": error, "username": username, "next": target},
        status=status,
    )


@router.route("/logout", roles=("regulator", "insurer", "admin"), methods=("POST",))
async def logout(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    await request.state.portal.write(accounts.end_session, token)
    # htmx follows redirects inside fetch; tell it to navigate instead.
    response: Response = (
        Response(status_code=200, headers={"HX-Redirect": "/"})
        if is_htmx(request)
        else RedirectResponse("/", status_code=303)
    )
    response.delete_cookie(SESSION_COOKIE, httponly=True, secure=True, samesite="lax")
    return response
