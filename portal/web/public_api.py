"""Public read endpoints (channel-api.md): insurers, their figures, published reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portal import insurer_stats, reviews
from portal.errors import BadRequest, NotFound, Unavailable
from portal.ratings import CHINA
from portal.reviews import ReviewFilter, ReviewPage
from portal.search import SearchError
from portal.web.errors import RETRY_AFTER
from portal.web.insurers import DEFAULT_DESCENDING
from portal.web.routing import Router

router = Router()


class SearchUnavailable(Unavailable):
    status, code = 503, "search_unavailable"


def _choice(params: QueryParams, name: str, options: tuple[str, ...], default: str) -> str:
    raw = params.get(name, "").strip()
    if (raw or name in params) and raw not in options:  # `?sort=` is a mistake, not a default
        raise BadRequest(
            "Invalid value “%(value)s” for the parameter %(name)s.",
            field=name,
            code="invalid_parameter",
            value=raw[:40],
            name=name,
        )
    return raw or default


@router.route("/api/v1/insurers", roles="public")
async def list_insurers(request: Request) -> Response:
    """Every insurer: counts and verified score, overall and per stage."""
    params = request.query_params
    q = " ".join(params.get("q", "").split())[:50]
    sort = _choice(params, "sort", insurer_stats.SORTS, "score")
    default = "desc" if DEFAULT_DESCENDING[sort] else "asc"
    descending = _choice(params, "dir", ("asc", "desc"), default) == "desc"
    rows = await request.state.portal.read(insurer_stats.directory, q, sort, descending)
    return JSONResponse({"insurers": [r.as_json() for r in rows], "count": len(rows)})


def _profile(conn: Connection, code: str) -> dict[str, Any]:
    today = datetime.now(CHINA).date()
    return insurer_stats.profile(conn, code, today, reviews.count_reviews).as_json()


@router.route("/api/v1/insurers/{code}", roles="public")
async def insurer_detail(request: Request) -> Response:
    """One insurer: counts, score summary and star distribution per stage and channel."""
    body = await request.state.portal.read(_profile, request.path_params["code"][:16])
    return JSONResponse(body)


def insurer_param(conn: Connection, code: str) -> int:
    """The id of the insurer a query parameter names; an unknown one is a bad request."""
    try:
        return insurer_stats.find_insurer(conn, code)[0]
    except NotFound:
        raise BadRequest(
            "Unknown insurer “%(value)s”.", field="insurer", code="unknown_insurer", value=code
        ) from None


async def _searched(portal: Any, f: ReviewFilter) -> ReviewPage:
    try:
        page = await run_in_threadpool(reviews.search_reviews, portal.search, f)
    except SearchError:
        raise SearchUnavailable(
            "Search is unavailable right now. Please try again later.", retry_after=RETRY_AFTER
        ) from None
    return await portal.read(reviews.with_threads, page)


@router.route("/api/v1/reviews", roles="public")
async def list_reviews(request: Request) -> Response:
    """Published reviews, newest first (or by relevance with q), 20 a page by default."""
    f = ReviewFilter.parse(request.query_params, strict=True)
    portal = request.state.portal
    insurer_id = await portal.read(insurer_param, f.insurer) if f.insurer else None
    if f.q:
        page = await _searched(portal, f)
    else:  # the database list shows removed texts as removed
        page = await portal.read(reviews.list_reviews, f, insurer_id)
    body = page.as_json()
    base = "/api/v1/reviews"
    body["next"] = base + f.query_string(page=f.page + 1) if page.has_next else None
    body["prev"] = base + f.query_string(page=min(f.page - 1, page.pages)) if f.page > 1 else None
    return JSONResponse(body)
