"""Page figures: the insurer page (`/insurers/{code}`) and its reviews fragment (the
htmx request of the same URL) over a database of N ratings (1M in the full run), as
req/s and p95 against the bare app rendering the same template from a context
captured once from that database (bench/bare_app.py): the same work minus the queries.

The database is made once per size and kept in the work directory: by
`bench.scale.generate` when that module is present (40 insurers, the 1M of issue 9),
otherwise by the demo loader (`portal demo`, the same write path, fewer rows).
"""

from __future__ import annotations

import importlib.util
import pickle
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from starlette.datastructures import QueryParams

from bench import http
from bench.figures import Figure
from bench.ingest import _settings, server_env
from portal import reviews
from portal.db import make_engine, migrate, reading
from portal.ledger import load_key
from portal.models import Rating
from portal.web import insurers

P95_TARGET_MS = 50.0
WORKERS = 2


def database(workdir: Path, ratings: int) -> tuple[str, dict[str, str], str]:
    """(url, server env, generator) of a SQLite database holding `ratings` ratings.

    The data figures' database of the same size is shared (generated once, in
    `<workdir>/../data`): a 1M-rating database takes minutes to make."""
    if importlib.util.find_spec("bench.data_figures") is not None:
        from bench import data_figures

        shared = data_figures.sqlite_db(
            workdir.parent / "data", ratings, meili=data_figures.have_meili(), progress=False
        )
        phone_key = _settings(shared.url, workdir).phone_key_path
        return shared.url, server_env(shared.url, shared.key_path, phone_key), "scale"
    scale = importlib.util.find_spec("bench.scale") is not None
    generator = "scale" if scale else "demo"
    path = workdir / f"pages-{generator}-{ratings}.db"
    url = f"sqlite:///{path}"
    settings = _settings(url, workdir)
    done = path.with_suffix(".done")
    if not done.exists():
        for p in workdir.glob(path.name + "*"):
            p.unlink()
        workdir.mkdir(parents=True, exist_ok=True)
        migrate(settings)
        load_key(settings.ledger_key_path, settings.ledger_origin, create=True)
        print(f"  filling {path.name} with {ratings:,} ratings ({generator})", flush=True)
        if scale:
            from bench import scale as scale_module  # type: ignore[attr-defined]

            scale_module.generate(url, ratings, progress=False)
        else:
            from portal import demo

            engine = make_engine(url)
            demo.load(engine, settings, n=ratings, seed=20261122, progress=False)
            engine.dispose()
        done.write_text(datetime.now(UTC).isoformat())
    else:
        migrate(settings)  # a database kept from an older schema (a no-op when current)
    return url, server_env(url, settings.ledger_key_path, settings.phone_key_path), generator


def busiest_insurer(url: str) -> tuple[str, int]:
    from portal.models import Insurer

    engine = make_engine(url)
    with reading(engine) as conn:
        row = conn.execute(
            select(Insurer.code, func.count(Rating.id))
            .join(Rating, Rating.insurer_id == Insurer.id)
            .group_by(Insurer.code)
            .order_by(func.count(Rating.id).desc())
            .limit(1)
        ).one()
    engine.dispose()
    return str(row[0]), int(row[1])


def capture_context(url: str, code: str, path: Path) -> None:
    """The page's context as the handler builds it (insurers.insurer_page), pickled."""
    engine = make_engine(url)
    request_params = QueryParams("")

    class _Req:
        query_params = request_params

    f = insurers.page_filter(_Req())  # type: ignore[arg-type]
    with reading(engine) as conn:
        data: dict[str, Any] = insurers._whole_page(conn, code, f)
    engine.dispose()
    data["base"] = f"/insurers/{data['insurer']['code']}"
    data["pager"] = reviews.page_links(f, data["page"], data["base"])
    data["chart"] = insurers.trend_chart(data["profile"].trend, "zh_Hans")
    path.write_bytes(pickle.dumps(data))


def run(*, quick: bool, runs: int, workdir: Path, duration: float, ratings: int) -> list[Figure]:
    workdir.mkdir(parents=True, exist_ok=True)
    url, env, generator = database(workdir, ratings)
    code, insurer_ratings = busiest_insurer(url)
    context = workdir / "page-context.pickle"
    capture_context(url, code, context)
    path = f"/insurers/{code}"
    htmx = {"HX-Request": "true"}
    results: dict[str, list[http.WrkResult]] = {}
    bare = http.Server(
        "bench.bare_app:app", WORKERS, env={"BENCH_PAGE_CONTEXT": str(context)}, ready_path="/ping"
    )
    app = http.Server("app:app", WORKERS, env=env, ready_path=path)
    for label, server in (("bare", bare), ("app", app)):
        with http.serving(server, workdir):
            for kind, headers in (("page", {}), ("fragment", htmx)):
                print(f"  {kind} of {code}, {label}, {WORKERS} workers", flush=True)
                http.wrk(server.url + path, 1, workdir, headers=headers)  # warm-up
                out = []
                for _ in range(runs):
                    r = http.wrk(server.url + path, duration, workdir, headers=headers)
                    print(f"    {r.brief()}", flush=True)
                    out.append(r)
                results[f"{label}.{kind}"] = out
    figures = []
    size = f"{ratings / 1e6:g}M" if ratings >= 1_000_000 else f"{ratings // 1000}k"
    detail = {
        "ratings": ratings,
        "generator": generator,
        "insurer": code,
        "insurer_ratings": insurer_ratings,
        "workers": WORKERS,
    }
    for kind, title in (("page", "Insurer page"), ("fragment", "Reviews fragment (htmx)")):
        bare_runs, app_runs = results[f"bare.{kind}"], results[f"app.{kind}"]
        figures.append(
            Figure(
                name=f"ceiling.template.{kind}",
                title=f"Bare template endpoint, {kind} from constants",
                unit="req/s",
                runs=[r.rps for r in bare_runs],
                detail={"p95_ms": [r.p95_ms for r in bare_runs], **detail},
            )
        )
        bare_rps = figures[-1].median
        bare_p95 = statistics.median(r.p95_ms for r in bare_runs)
        failed = [r.brief() for r in app_runs if not r.ok]
        figures.append(
            Figure(
                name=f"{kind}.insurer.rps",
                title=f"{title} at {size} ratings, throughput",
                unit="req/s",
                runs=[r.rps if r.ok else 0.0 for r in app_runs],
                ceiling=bare_rps,
                ceiling_name=f"ceiling.template.{kind}",
                judged="ratio",
                detail={"failed_runs": failed, **detail},
            )
        )
        figures.append(
            Figure(
                name=f"{kind}.insurer.p95",
                title=f"{title} at {size} ratings, p95 at 64 connections",
                unit="ms",
                runs=[r.p95_ms if r.ok else float("inf") for r in app_runs],
                better="lower",
                target=P95_TARGET_MS,
                ceiling=bare_p95,
                ceiling_name=f"ceiling.template.{kind} (p95)",
                judged="value",
                detail={"p99_ms": [r.p99_ms for r in app_runs], **detail},
            )
        )
    return figures
