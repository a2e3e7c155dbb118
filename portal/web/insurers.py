"""Public insurer pages: the directory (/insurers) and one insurer (/insurers/{code})."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from babel.dates import format_date, format_skeleton
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from portal import insurer_stats, page_cache, reviews
from portal.insurer_stats import MonthPoint
from portal.ratings import CHINA
from portal.regions import province_name
from portal.reviews import ReviewFilter
from portal.web.rendering import (
    is_htmx,
    locale_of,
    render,
    render_blocks,
    render_prerendered,
)
from portal.web.routing import Router

router = Router()
DEFAULT_DESCENDING = {"score": True, "count": True, "name": False}


def directory_sort(params: Any) -> tuple[str, bool]:
    """`sort` (score, count, name) and `dir` (asc, desc; each sort has a natural one)."""
    sort = params.get("sort", "")
    sort = sort if sort in insurer_stats.SORTS else "score"
    direction = params.get("dir", "")
    descending = direction == "desc" if direction in ("asc", "desc") else DEFAULT_DESCENDING[sort]
    return sort, descending


def directory_url(q: str, sort: str, descending: bool) -> str:
    """The canonical address of a directory view: defaults are left out."""
    params = {"q": q} if q else {}
    if sort != "score":
        params["sort"] = sort
    if descending != DEFAULT_DESCENDING[sort]:
        params["dir"] = "desc" if descending else "asc"
    return "/insurers" + ("?" + urlencode(params) if params else "")


def sort_links(q: str, sort: str, descending: bool) -> dict[str, dict[str, str]]:
    """Per column: the URL that sorts by it (the current column flips) and aria-sort."""
    out = {}
    for key in insurer_stats.SORTS:
        flip = not descending if key == sort else DEFAULT_DESCENDING[key]
        state = ("descending" if descending else "ascending") if key == sort else "none"
        out[key] = {"url": directory_url(q, key, flip), "aria": state}
    return out


@router.route("/insurers", roles="public")
async def insurer_directory(request: Request) -> Response:
    """All insurers; the search box matches Chinese names, pinyin and initials."""
    q = " ".join(request.query_params.get("q", "").split())[:50]
    sort, descending = directory_sort(request.query_params)
    rows = await request.state.portal.read(insurer_stats.directory, q, sort, descending)
    context = {
        "rows": rows,
        "q": q,
        "sort": sort,
        "descending": descending,
        "dir": None
        if descending == DEFAULT_DESCENDING[sort]
        else ("desc" if descending else "asc"),
        "links": sort_links(q, sort, descending),
    }
    # htmx pushes this clean address instead of the form's (which lists empty fields).
    push = {"HX-Push-Url": directory_url(q, sort, descending)}
    return render(request, "public/insurers.html", context, block="directory", headers=push)


# -- one insurer -----------------------------------------------------------------------


def page_filter(request: Request) -> ReviewFilter:
    """The review filters of an insurer page (the insurer is the page; no text query)."""
    f = ReviewFilter.parse(request.query_params, strict=False)
    sort = f.sort if f.sort in reviews.SORTS and f.sort != "newest" else None
    return replace(f, q="", insurer=None, sort=sort, per_page=reviews.PER_PAGE)


def _reviews_part(conn: Connection, code: str, f: ReviewFilter) -> dict[str, Any]:
    iid, code, name = insurer_stats.find_insurer(conn, code)
    return {
        "insurer": {"id": iid, "code": code, "name": name},
        "page": reviews.list_reviews(conn, f, iid),
        "provinces": reviews.insurer_provinces(conn, iid),
        "province_name": province_name,
        "f": f,
    }


def _whole_page(
    conn: Connection, code: str, f: ReviewFilter, today: date | None = None
) -> dict[str, Any]:
    today = today or datetime.now(CHINA).date()
    p = insurer_stats.profile(conn, code, today, reviews.count_reviews)
    return {"profile": p, **_reviews_part(conn, p.code, f)}


PAGE_BLOCKS = ("head", "title", "content")


@router.route("/insurers/{code}", roles="public")
async def insurer_page(request: Request) -> Response:
    """Headline figures, distributions, trend and reviews; htmx gets the reviews only.

    The public blocks are cached as HTML per worker (portal/page_cache.py), checked
    against the page's data version on every request; the shell is rendered per visitor."""
    f = page_filter(request)
    portal = request.state.portal
    fragment = is_htmx(request)
    # The version first, then (on a miss) the data: see portal/page_cache.py. On SQLite
    # it is usually known on the event loop without a query (page_cache.LoopVersions).
    code = request.path_params["code"][:16]
    v = portal.versions.get(code) if portal.versions is not None else None
    if v is None:
        v = await portal.read(page_cache.page_version, code)
    base = f"/insurers/{v.code}"
    push = {"HX-Push-Url": base + f.query_string()}  # without the empty fields
    today = datetime.now(CHINA).date()  # the trend's months
    locale = locale_of(request)
    key = ("insurer", v.code, locale, f.query_string(), "reviews" if fragment else today)
    blocks = portal.page_cache.get(key, v.version)
    if blocks is None:
        if fragment:
            data = await portal.read(_reviews_part, v.code, f)
        else:
            data = await portal.read(_whole_page, v.code, f, today)
            data["chart"] = trend_chart(data["profile"].trend, locale)
        data["base"] = base
        data["pager"] = reviews.page_links(f, data["page"], base)
        names = ("reviews",) if fragment else PAGE_BLOCKS
        blocks = render_blocks(request, "public/insurer.html", names, data)
        portal.page_cache.put(key, v.version, blocks)
    return render_prerendered(request, blocks, block="reviews", headers=push)


# -- the trend chart (server-rendered SVG: no script, no inline style) -----------------


@dataclass(frozen=True)
class Slot:
    label: str  # short month label on the axis
    title: str  # the month in full, for the table and tooltips
    n: int
    mean: float | None
    x: float  # left edge of the bar
    w: float  # bar width
    cx: float  # centre of the slot
    bar_y: float
    bar_h: float
    point_y: float | None


@dataclass(frozen=True)
class Chart:
    slots: list[Slot]
    line: str  # SVG path data; a month without ratings breaks the line
    n_max: int
    width: int = 560
    height: int = 240
    left: int = 44
    right: int = 48
    top: int = 16
    bottom: int = 32

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom

    def score_y(self, score: float) -> float:
        return round(self.plot_bottom - (self.plot_bottom - self.top) * score / 100, 1)

    @property
    def has_data(self) -> bool:
        return any(s.n for s in self.slots)


def nice_max(n: int) -> int:
    """A round upper bound for the count axis (1, 2, 3, 4, 5, 6, 8, 10, 20, ...)."""
    step = 1
    while True:
        for m in (1, 2, 3, 4, 5, 6, 8):
            if n <= step * m:
                return step * m
        step *= 10


def trend_chart(points: list[MonthPoint], locale: str) -> Chart:
    shell = Chart(slots=[], line="", n_max=nice_max(max((p.n for p in points), default=0)))
    width = (shell.width - shell.left - shell.right) / max(1, len(points))
    babel = "zh_Hans_CN" if locale == "zh_Hans" else "en"
    slots = []
    for i, p in enumerate(points):
        height = (shell.plot_bottom - shell.top) * p.n / shell.n_max
        slots.append(
            Slot(
                label=format_date(p.month, "LLL", locale=babel),
                title=format_skeleton("yMMM", p.month, locale=babel),
                n=p.n,
                mean=p.mean,
                x=round(shell.left + i * width + width * 0.2, 1),
                w=round(width * 0.6, 1),
                cx=round(shell.left + (i + 0.5) * width, 1),
                bar_y=round(shell.plot_bottom - height, 1),
                bar_h=round(height, 1),
                point_y=None if p.mean is None else shell.score_y(p.mean),
            )
        )
    return replace(shell, slots=slots, line=_line(slots))


def _line(slots: list[Slot]) -> str:
    parts, pen_down = [], False
    for s in slots:
        if s.point_y is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{s.cx} {s.point_y}")
        pen_down = True
    return " ".join(parts)
