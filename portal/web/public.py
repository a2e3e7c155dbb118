"""Public pages: home, language switch, health check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from portal import ledger, rollups
from portal.canonical import utc
from portal.i18n import LOCALES
from portal.models import Outbox
from portal.web.errors import RETRY_AFTER
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
    """What the database says: outbox backlog and the latest signed checkpoint."""
    now = datetime.now(UTC)
    backlog = conn.execute(
        select(
            func.count(),
            func.count().filter(Outbox.attempts > 0),
            func.min(Outbox.created_at),
        ).where(Outbox.done_at.is_(None))
    ).one()
    cp = ledger.latest(conn)
    return {
        "outbox_pending": backlog[0],
        "outbox_failing": backlog[1],  # pending rows whose last indexing attempt failed
        "outbox_oldest_age_seconds": _age(now, backlog[2]),
        "tree_size": cp.tree_size if cp else 0,
        "checkpoint_age_seconds": _age(now, cp.timestamp if cp else None),
    }


def _age(now: datetime, since: datetime | None) -> float | None:
    return None if since is None else round((now - utc(since)).total_seconds(), 1)


FACTS = ("outbox_pending", "outbox_failing", "outbox_oldest_age_seconds", "tree_size")
UNKNOWN: dict[str, None] = dict.fromkeys((*FACTS, "checkpoint_age_seconds"))  # db down


@router.route("/healthz", roles="public")
async def healthz(request: Request) -> Response:
    """Each component as it is: 200 while the database answers, else 503 (docs/outages.md
    "/healthz"). search: ok, degraded (answers, but the index is missing or lagging
    behind failed outbox rows), down, or fallback (no Meilisearch configured)."""
    portal = request.state.portal
    try:
        facts, db = await portal.read(_health), "ok"
    except Exception:  # noqa: BLE001 - any database failure means "down" here
        facts, db = UNKNOWN, "down"
    body = {
        "db": db,
        "search": await _search_status(portal.search, facts),
        "search_backend": portal.search.name,
        **facts,
    }
    headers = {} if db == "ok" else {"Retry-After": str(RETRY_AFTER)}
    return JSONResponse(body, status_code=200 if db == "ok" else 503, headers=headers)


async def _search_status(index: Any, facts: dict[str, Any]) -> str:
    if index.name != "meilisearch":  # the SQL fallback reads the database itself
        return "fallback" if await run_in_threadpool(index.healthy) else "down"
    status = str(await run_in_threadpool(index.status))
    return "degraded" if status == "ok" and facts["outbox_failing"] else status
