"""Rankings: the regulator's ranking table, drill-down and publishing; the insurer's own
branches and staff; published snapshots for the public, the industry and the regulator.

Every view has a URL (filters are query parameters); htmx swaps only the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from portal import disclosure, insurer_stats, ledger, ranking_data, rankings
from portal.errors import Invalid, NotFound
from portal.i18n import N_, translate
from portal.models import Insurer
from portal.ranking_data import Slice
from portal.ranking_exports import COLUMNS, columns_for, to_csv, to_xlsx
from portal.ratings import CHINA
from portal.web.rendering import is_htmx, locale_of, render
from portal.web.routing import Router

router = Router()
SORTS: dict[str, Any] = {  # natural order of each column; ?dir=desc reverses it
    "rank": lambda r: r.rank,
    "count": lambda r: r.n,
    "mean": lambda r: r.mean[0] if r.mean else None,
    "satisfied": lambda r: r.satisfied[0] if r.satisfied else None,
    "dissatisfied": lambda r: r.dissatisfied[0] if r.dissatisfied else None,
    "per_10k": lambda r: r.per_10k,
    "index": lambda r: r.index,
    "reply_rate": lambda r: r.extra.get("reply_rate"),
    "name": lambda r: r.key,
}
PARAMS = ("period", "p", "from", "to", "scope", "region", "stage", "channel", "view")


def private(response: Response) -> Response:
    """What a login may see differs (scopes, roles): never in a shared or browser cache."""
    response.headers["Cache-Control"] = "private, no-store"
    vary = [v.strip() for v in response.headers.get("Vary", "").split(",") if v.strip()]
    response.headers["Vary"] = ", ".join([*vary, "Cookie"] if "Cookie" not in vary else vary)
    return response


def today() -> Any:
    return datetime.now(CHINA).date()


def parse_slice(params: Mapping[str, Any], level: str = "insurer") -> Slice:
    """The slice a query string (or form) names; bad values raise Invalid (nothing runs)."""
    kind = str(params.get("period") or "quarter")
    if kind not in rankings.PERIOD_KINDS:
        raise Invalid(
            "Invalid value “%(value)s” for the parameter %(name)s.",
            field="period",
            code="invalid_parameter",
            value=kind[:40],
            name="period",
        )
    value = str(params.get("p") or params.get("from") or "")
    if kind != "custom" and _shape(value) not in (None, kind):
        value = ""  # the period type changed and p still names the old one: current
    if kind == "custom":
        period = rankings.parse_period(kind, value, str(params.get("to") or ""), today())
    elif value:
        period = rankings.parse_period(kind, value, today=today())
    else:
        period = rankings.current_period(kind, today())
    scope = rankings.parse_scope(
        str(params.get("scope") or "national"), str(params.get("region") or "")
    )
    stage, channel = ranking_data.check_stage_channel(
        str(params.get("stage") or ""), str(params.get("channel") or "")
    )
    view = ranking_data.check_choice(str(params.get("view") or ""), ("plain", "recent"), "view")
    return Slice(period, scope, stage, channel, recency=view == "recent", level=level)


_SHAPES = (
    ("month", r"\d{4}-\d{2}"),
    ("quarter", r"\d{4}-?[Qq][1-4]"),
    ("year", r"\d{4}"),
    ("custom", r"\d{4}-\d{2}-\d{2}"),
)


def _shape(value: str) -> str | None:
    """Which period type a value is written as (None: none, so it is an error)."""
    return next((k for k, rx in _SHAPES if re.fullmatch(rx, value.strip())), None)


def _slice_or_refusal(request: Request) -> Slice | Response:
    """The slice of the query; for htmx a bad one is a fragment saying why, as a 200
    (htmx leaves 4xx responses unswapped, so the form would fail silently)."""
    try:
        return parse_slice(request.query_params)
    except Invalid as err:
        if not is_htmx(request):
            raise
        message = translate(locale_of(request), err.message, err.params)
        return private(render(request, "_partials/_ranking_error.html", {"message": message}))


def slice_query(s: Slice, **extra: str) -> str:
    """The query string that names a slice (links keep the current view)."""
    return urlencode(slice_params(s) | extra)


def slice_params(s: Slice) -> dict[str, str]:
    q = {"period": s.period.kind}
    if s.period.kind == "custom":
        q |= {"p": s.period.start.isoformat(), "to": s.period.end.isoformat()}
    else:
        q["p"] = s.period.label
    if s.scope.kind != "national":
        q |= {"scope": s.scope.kind, "region": s.scope.region}
    q |= {k: v for k, v in (("stage", s.stage), ("channel", s.channel)) if v}
    if s.recency:
        q["view"] = "recent"
    return q


def sort_rows(ranking: rankings.Ranking, sort: str, descending: bool) -> list[rankings.Ranked]:
    """Rows by one column, ascending or descending; rows without the figure always last
    (insufficient data has no rank). Ties keep the ranking's order (stable sort)."""
    key = SORTS.get(sort, SORTS["rank"])
    present = [r for r in ranking.rows if key(r) is not None]
    missing = [r for r in ranking.rows if key(r) is None]
    return sorted(present, key=key, reverse=descending) + missing


def _method(request: Request) -> rankings.Method:
    return request.state.portal.settings.ranking_method()


def _view(conn: Connection, s: Slice, method: rankings.Method) -> dict[str, Any]:
    return {"ranking": ranking_data.build(conn, s, method), "checkpoint": ledger.latest(conn)}


def _page(conn: Connection, s: Slice, method: rankings.Method) -> dict[str, Any]:
    return _view(conn, s, method) | {"trend": ranking_data.trend(conn, s)}


def _context(request: Request, s: Slice, data: dict[str, Any]) -> dict[str, Any]:
    sort = request.query_params.get("sort", "rank")
    sort = sort if sort in SORTS else "rank"
    descending = request.query_params.get("dir") == "desc"
    return {
        **data,
        "json_rows": [r.as_json() for r in sort_rows(data["ranking"], sort, descending)],
        "publish_fields": list(slice_params(s).items()),
        "slice": s,
        "query": slice_query(s),
        "sort": sort,
        "descending": descending,
        "today": today(),
    }


@router.route("/regulator/rankings", roles=("regulator", "admin"))
async def regulator_rankings(request: Request) -> Response:
    s = _slice_or_refusal(request)
    if isinstance(s, Response):
        return s
    data = await request.state.portal.read(_page, s, _method(request))
    ctx = _context(request, s, data) | {"base": "/regulator/rankings", "level": "insurer"}
    return private(render(request, "regulator/rankings.html", ctx, block="ranking"))


def _drill(conn: Connection, s: Slice, code: str, method: rankings.Method) -> dict[str, Any]:
    iid, code, name = insurer_stats.find_insurer(conn, code)
    branches = ranking_data.build(conn, replace(s, level="branch", insurer_id=iid), method)
    staff = ranking_data.build(conn, replace(s, level="staff", insurer_id=iid), method)
    return {
        "insurer": {"code": code, "name": name},
        "branches": branches,
        "staff": staff,
        "branch_rows": [r.as_json() for r in branches.rows],
        "staff_rows": [r.as_json() for r in staff.rows],
    }


@router.route("/regulator/rankings/insurers/{code}", roles=("regulator", "admin"))
async def regulator_drill(request: Request) -> Response:
    """One insurer's branches and staff, ranked the same way (regulator only)."""
    s = _slice_or_refusal(request)
    if isinstance(s, Response):
        return s
    data = await request.state.portal.read(
        _drill, s, request.path_params["code"][:16], _method(request)
    )
    ctx = data | {"slice": s, "query": slice_query(s), "base": request.url.path}
    return private(render(request, "regulator/ranking_drill.html", ctx, block="ranking"))


def _own(conn: Connection, s: Slice, insurer_id: int, method: rankings.Method) -> dict[str, Any]:
    row = conn.execute(select(Insurer.code).where(Insurer.id == insurer_id)).one()
    return _drill(conn, s, row.code, method)


@router.route("/insurer/rankings", roles="insurer")
async def insurer_rankings(request: Request) -> Response:
    """The insurer's own branches and staff (never another insurer's)."""
    s = _slice_or_refusal(request)
    if isinstance(s, Response):
        return s
    data = await request.state.portal.read(
        _own, s, request.state.principal.insurer_id, _method(request)
    )
    ctx = data | {"slice": s, "query": slice_query(s), "base": request.url.path}
    return private(render(request, "insurer/rankings.html", ctx, block="ranking"))


def _live_meta(data: dict[str, Any], s: Slice) -> dict[str, Any]:
    cp = data["checkpoint"]
    return {
        "slice": s.as_json(),
        "method": data["ranking"].method.as_json(),
        "checkpoint": {"tree_size": cp.tree_size, "root_hash": cp.root_hash} if cp else None,
    }


def _download(content: str | bytes, fmt: str, name: str) -> Response:
    media = (
        "text/csv; charset=utf-8"
        if fmt == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    return Response(
        content,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


def _format(request: Request) -> str:
    fmt = request.query_params.get("format", "csv")
    return str(ranking_data.check_choice(fmt, ("csv", "xlsx"), "format"))


def _export(
    title: str,
    meta: dict[str, Any],
    rows: list[dict[str, Any]],
    fmt: str,
    columns: tuple[str, ...] = COLUMNS,
) -> Any:
    writer = to_csv if fmt == "csv" else to_xlsx
    return writer(title, meta, rows, columns)


@router.route("/regulator/rankings/export", roles=("regulator", "admin"))
async def regulator_export(request: Request) -> Response:
    s = parse_slice(request.query_params)
    fmt = _format(request)
    data = await request.state.portal.read(_view, s, _method(request))
    title = translate(
        locale_of(request), N_("Insurer ranking %(period)s"), {"period": s.period.label}
    )
    rows = [r.as_json() for r in data["ranking"].rows]
    content = _export(title, _live_meta(data, s), rows, fmt)
    return private(_download(content, fmt, f"ranking-{s.period.label}"))


def _part(request: Request) -> str:
    part = request.query_params.get("part", "branches")
    return str(ranking_data.check_choice(part, ("branches", "staff"), "part"))


async def _drill_export(request: Request, s: Slice, data: dict[str, Any]) -> Response:
    fmt, part = _format(request), _part(request)
    ranking = data["branches" if part == "branches" else "staff"]
    title = f"{data['insurer']['name']} · {s.period.label} · {part}"
    meta = {
        "slice": s.as_json() | {"level": "branch" if part == "branches" else "staff"},
        "method": ranking.method.as_json(),
        "checkpoint": data["checkpoint"],
    }
    rows = [r.as_json() for r in ranking.rows]
    name = f"ranking-{data['insurer']['code']}-{part}-{s.period.label}"
    return _download(_export(title, meta, rows, fmt), fmt, name)


def _with_checkpoint(fn: Any) -> Any:
    def run(conn: Connection, *args: Any) -> dict[str, Any]:
        cp = ledger.latest(conn)
        checkpoint = {"tree_size": cp.tree_size, "root_hash": cp.root_hash} if cp else None
        return dict(fn(conn, *args)) | {"checkpoint": checkpoint}

    return run


@router.route("/regulator/rankings/insurers/{code}/export", roles=("regulator", "admin"))
async def regulator_drill_export(request: Request) -> Response:
    s = parse_slice(request.query_params)
    code = request.path_params["code"][:16]
    data = await request.state.portal.read(_with_checkpoint(_drill), s, code, _method(request))
    return private(await _drill_export(request, s, data))


@router.route("/insurer/rankings/export", roles="insurer")
async def insurer_export(request: Request) -> Response:
    s = parse_slice(request.query_params)
    insurer_id = request.state.principal.insurer_id
    data = await request.state.portal.read(_with_checkpoint(_own), s, insurer_id, _method(request))
    return private(await _drill_export(request, s, data))


@router.route("/regulator/rankings/publish", roles="regulator", methods=("POST",))
async def publish(request: Request) -> Response:
    """Freeze the ranking of a slice as a snapshot for the chosen audience."""
    form = await request.form()
    s = parse_slice(form)
    scope = disclosure.check_scope(str(form.get("disclosure") or ""))
    portal = request.state.portal
    snapshot_id = await portal.call(
        disclosure.publish,
        portal.key,
        s,
        scope,
        request.state.principal.user_id,
        portal.settings.ranking_method(),
    )
    return RedirectResponse(f"/rankings/{snapshot_id}", status_code=303)


# -- published snapshots ---------------------------------------------------------------------


def _scopes(request: Request) -> list[str]:
    return disclosure.visible_scopes(request.state.principal.role)


def _snapshot_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:  # ids are 32-bit
        raise NotFound("There is no such published ranking.", code="no_snapshot")
    return int(raw)


@router.route("/rankings", roles="public")
async def published(request: Request) -> Response:
    """Published rankings this visitor may see; the newest one in full."""
    items = await request.state.portal.read(disclosure.snapshots, _scopes(request))
    context = {"snapshots": items, "shown": items[0] if items else None}
    return private(render(request, "public/rankings.html", context))


async def _visible(request: Request) -> disclosure.Snapshot:
    sid = _snapshot_id(request.path_params["snapshot_id"])
    return await request.state.portal.read(disclosure.snapshot, sid, _scopes(request))


@router.route("/rankings/{snapshot_id}", roles="public")
async def published_one(request: Request) -> Response:
    shown = await _visible(request)
    items = await request.state.portal.read(disclosure.snapshots, _scopes(request))
    return private(render(request, "public/rankings.html", {"snapshots": items, "shown": shown}))


@router.route("/rankings/{snapshot_id}/print", roles="public")
async def published_print(request: Request) -> Response:
    return private(render(request, "public/ranking_print.html", {"shown": await _visible(request)}))


@router.route("/rankings/{snapshot_id}/export", roles="public")
async def published_export(request: Request) -> Response:
    shown = await _visible(request)
    fmt = _format(request)
    title = translate(locale_of(request), N_("Insurer ranking %(period)s"), {"period": shown.label})
    meta = shown.as_json(with_rows=False)
    content = _export(title, meta, shown.rows, fmt, columns_for(shown.scope))
    return private(_download(content, fmt, f"ranking-{shown.label}-{shown.id}"))


# -- public API --------------------------------------------------------------------------------


@router.route("/api/v1/rankings", roles="public")
async def api_rankings(request: Request) -> Response:
    """Published rankings of the public scope, newest first (at most 20)."""
    items = await request.state.portal.read(disclosure.snapshots, ["public"], 20)
    return JSONResponse({"rankings": [s.as_json() for s in items], "count": len(items)})


@router.route("/api/v1/rankings/{snapshot_id}", roles="public")
async def api_ranking(request: Request) -> Response:
    sid = _snapshot_id(request.path_params["snapshot_id"])
    shown = await request.state.portal.read(disclosure.snapshot, sid, ["public"])
    return JSONResponse(shown.as_json())
