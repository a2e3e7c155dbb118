"""Public pages: home, language switch, health check."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, func, select, text
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from portal import ledger, rollups
from portal.i18n import LOCALES
from portal.models import Outbox
from portal.web.rendering import render
from portal.web.routing import Router

router = Router()


def _home(conn: Connection) -> dict[str, Any]:
    cp = ledger.latest(conn)
    return {
        "totals": rollups.totals(conn),
        "tree_size": cp.tree_size if cp else 0,
        "checkpoint_at": cp.timestamp if cp else None,
    }


@router.route("/", roles="public")
async def home(request: Request) -> Response:
    data = await request.state.portal.read(_home)
    return render(request, "public/home.html", data)


def safe_next(target: str | None) -> str:
    """Only local paths: never redirect a visitor to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@router.route("/lang/{locale}", roles="public")
async def switch_language(request: Request) -> Response:
    locale = request.path_params["locale"]
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    if locale in LOCALES:
        response.set_cookie(
            "lang", locale, max_age=365 * 86400, samesite="lax", secure=True, httponly=True
        )
    return response


def _health(conn: Connection) -> dict[str, Any]:
    conn.execute(text("SELECT 1"))
    pending = conn.execute(
        select(func.count()).select_from(Outbox).where(Outbox.done_at.is_(None))
    ).scalar_one()
    cp = ledger.latest(conn)
    return {"outbox_pending": pending, "tree_size": cp.tree_size if cp else 0}


@router.route("/healthz", roles="public")
async def healthz(request: Request) -> Response:
    portal = request.state.portal
    try:
        facts = await portal.read(_health)
        db = "ok"
    except Exception:  # noqa: BLE001 - any database failure means "down" here
        facts, db = {}, "down"
    search_ok = await _search_ok(portal)
    body = {
        "db": db,
        "search": "ok" if search_ok else "degraded",
        "search_backend": portal.search.name,
        **facts,
    }
    return JSONResponse(body, status_code=200 if db == "ok" else 503)


async def _search_ok(portal: Any) -> bool:
    from starlette.concurrency import run_in_threadpool

    try:
        return bool(await run_in_threadpool(portal.search.healthy))
    except Exception:  # noqa: BLE001
        return False
