"""Public review search (/reviews): a query box, filters with facet counts, pages."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from portal import insurer_stats, reviews
from portal.models import Insurer
from portal.regions import province_name
from portal.reviews import ReviewFilter, ReviewPage
from portal.search import SearchError
from portal.web.rendering import render
from portal.web.routing import Router

log = logging.getLogger("portal")
router = Router()


def insurer_names(conn: Connection) -> list[tuple[str, str]]:
    """(code, name) of every insurer, in pinyin order."""
    rows = conn.execute(select(Insurer.code, Insurer.name)).all()
    return sorted(((c, n) for c, n in rows), key=lambda r: (insurer_stats.pinyin_keys(r[1]), r[0]))


async def run_search(portal: Any, f: ReviewFilter) -> tuple[ReviewPage, bool]:
    """The page of hits, and whether search failed (then the page is empty)."""
    try:
        page = await run_in_threadpool(reviews.search_reviews, portal.search, f)
        return await portal.read(reviews.with_threads, page), False
    except SearchError:
        log.exception("review search failed")
        return reviews.no_reviews(f), True


def facet_options(
    page: ReviewPage, names: list[tuple[str, str]], f: ReviewFilter
) -> dict[str, Any]:
    """Options for the insurer and province selects: what matched, plus what is chosen."""
    facets = page.facets or {}
    by_insurer = facets.get("insurer", {})
    insurers = [(c, n) for c, n in names if by_insurer.get(c) or c == f.insurer]
    provinces = dict(facets.get("province", {}))
    if f.region and f.region not in provinces:
        provinces[f.region] = 0
    return {"insurers": insurers, "provinces": sorted(provinces)}


FILTER_OF = {
    "insurer": "insurer",
    "stage": "stage",
    "channel": "channel",
    "stars": "stars",
    "verified": "verified",
    "province": "region",
}


def shown_counts(page: ReviewPage, f: ReviewFilter) -> dict[str, dict[str, int] | None]:
    """Facet counts per select; none for a filtered facet (it would say 0 or all)."""
    facets = page.facets
    return {
        name: None if facets is None or getattr(f, attr) is not None else facets.get(name, {})
        for name, attr in FILTER_OF.items()
    }


@router.route("/reviews", roles="public")
async def review_search(request: Request) -> Response:
    """Search every published review (and insurer names); htmx gets the results only."""
    f = ReviewFilter.parse(request.query_params, strict=False)
    default_sort = "relevance" if f.q else "newest"
    f = replace(f, per_page=reviews.PER_PAGE, sort=None if f.sort == default_sort else f.sort)
    portal = request.state.portal
    page, failed = await run_search(portal, f)
    names = await portal.read(insurer_names)
    matching = [(c, n) for c, n in names if f.q and insurer_stats.term_matches(c, n, f.q)]
    context = {
        "f": f,
        "page": page,
        "failed": failed,
        "counts": shown_counts(page, f),
        "province_name": province_name,
        "options": facet_options(page, names, f),
        "matching": matching[:8],
        "base": "/reviews",
        "pager": reviews.page_links(f, page, "/reviews"),
    }
    push = {"HX-Push-Url": "/reviews" + f.query_string()}  # without the empty fields
    return render(request, "public/reviews.html", context, block="results", headers=push)
