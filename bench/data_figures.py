"""The data-side figures: regulator ranking, search and checkpoint, on generated data.

    .venv/bin/python -m bench.data_figures [--quick] [--runs 3] [--workdir var/bench]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Writes bench/data_results.json. `bench/run.py` calls `run()` and merges the figures.

Sizes (ratings): full 1M and 10M, quick 10k and 50k (`--sizes` overrides; the quick
run must stay short in CI, generation included). Databases come from
`bench.scale.generate` and are kept in `workdir` as `scale-<size>-s<seed>.db` (with
their ledger key and Meilisearch data beside them), so a second run reuses them.
PostgreSQL, when a URL is given, is measured at the smaller size in a database of its
own (`bench_<size>`), dropped at the end; the database named in the URL is only used
to create and drop it.

Figures
- `ranking.rollups.<size>.<db>`: the regulator's ranking page data (quarter x province
  x stage): exactly what /regulator/rankings computes (`rankings_pages._page`: the
  ranking with the previous quarter's ranks, reply figures, and the 12-month trend),
  from rollups. ms, target <= 50.
- `ranking.naive.<size>.<db>`: the same page computed by GROUP BY over the raw ratings
  (the same code with the ranking's rollup read, `ranking_data._daily_tallies`, swapped
  for the raw one; the 12-month trend is read from the monthly rollup in both; both
  results are checked to be identical). ms, no target.
- `ranking.speedup.<size>.<db>`: naive / rollups per run pair, judged as a value
  (target >= 100x). The naive time is in `detail`.
- `search.<backend>.p95|p50.<size>`: Chinese queries with filters and facets through
  the app's SearchIndex (Meilisearch, and the SQL fallback), over the reviews of the
  larger database (1M reviews at 10M ratings). p95 target <= 30 ms for Meilisearch.
- `checkpoint.<n>.<db>`: `ledger.checkpoint` sequencing and signing n new ratings
  (1% of the larger database: 100k on top of 10M) on top of it. s, target <= 2 (the
  issue's figure for 100k, kept for smaller n). Each run adds its n ratings (through
  record_many) to the cached database for good.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import platform
import random
import shutil
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, case, func, select, text
from sqlalchemy.engine import make_url

from bench import scale
from bench.figures import Figure
from portal import ledger, ranking_data, rankings
from portal.config import load_settings
from portal.db import make_engine, migrate, reading
from portal.models import Branch, Rating
from portal.ranking_data import Slice
from portal.rankings import Tally
from portal.ratings import CHINA, RatingIn, Subjects, record_many
from portal.search import MeiliIndex, SearchQuery, SqlIndex, documents
from portal.search import server as meili_server
from portal.web import rankings_pages

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED = 1
FULL = (1_000_000, 10_000_000)
SEARCH_DOCUMENTS = 1_000_000  # review documents of the full run's search figure
QUICK = (10_000, 50_000)
PROVINCE = "440000"  # Guangdong: the busiest province of the generated data
STAGE = "claim"


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"


# -- databases ----------------------------------------------------------------------------


@dataclasses.dataclass
class Db:
    url: str
    size: int
    info: dict[str, Any]
    key_path: Path
    meili_dir: Path | None = None

    @property
    def kind(self) -> str:
        return make_url(self.url).get_backend_name()


def sqlite_db(workdir: Path, size: int, *, meili: bool, progress: bool) -> Db:
    """The cached SQLite database of `size` ratings, generated when missing."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = workdir / f"scale-{label(size)}-s{SEED}"
    db, info_path, meili_dir = base.with_suffix(".db"), base.with_suffix(".json"), None
    if meili:
        meili_dir = base.with_suffix(".meili")
    if not info_path.exists():  # written last: a half-made database is made again
        for stale in workdir.glob(f"{base.name}.*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        url = f"sqlite:///{db}"
        with _meili(meili_dir) as server:
            creds = (server.url, server.key) if server else None
            info = scale.generate(url, size, seed=SEED, meili=creds, progress=progress)
        info_path.write_text(json.dumps(info, indent=2) + "\n")
    info = json.loads(info_path.read_text())
    # A database cached before a later migration (0009 added the monthly rollups, filled
    # from the daily ones) is brought up to date, not measured against a stale schema.
    settings = load_settings(env_file="/nonexistent")
    migrate(dataclasses.replace(settings, database_url=f"sqlite:///{db}"))
    return Db(f"sqlite:///{db}", size, info, Path(info["ledger_key"]), meili_dir)


@contextlib.contextmanager
def _meili(directory: Path | None) -> Iterator[meili_server.MeiliServer | None]:
    """A Meilisearch on `directory` (its data kept there), stopped by its PID after."""
    if directory is None:
        yield None
        return
    server = meili_server.start(directory, key=meili_server.dev_key(directory), timeout=120)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_db(admin_url: str, size: int, progress: bool) -> Iterator[Db]:
    """A database `bench_<size>` of its own on the server, generated, dropped after."""
    name = f"bench_{label(size)}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    if make_url(admin_url).database == name:
        raise ValueError("give the URL of another database to create the bench one from")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        info = scale.generate(url, size, seed=SEED, progress=progress)
        yield Db(url, size, info, Path(info["ledger_key"]))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


# -- ranking --------------------------------------------------------------------------------


def ranking_slice() -> Slice:
    """The regulator view: last complete quarter x one province x one stage."""
    period = rankings.current_period("quarter", datetime.now(CHINA).date())
    return Slice(period, rankings.parse_scope("province", PROVINCE), stage=STAGE)


def _raw_daily_tallies(
    conn: Any, s: Slice, method: rankings.Method, period: rankings.Period
) -> dict[tuple[int, int], dict[str, Tally]]:
    """What ranking_data._daily_tallies reads from rollup_daily, by GROUP BY over the
    ratings themselves (the naive way), with the same China-time day bounds."""
    r = Rating.__table__.c
    keys = [r.insurer_id, func.coalesce(r.branch_id, 0), r.channel]
    measures = [
        func.count(),
        func.sum(r.score),
        func.sum(r.score * r.score),
        func.sum(case((r.top_box, 1), else_=0)),
        func.sum(case((r.bottom_box, 1), else_=0)),
    ]
    stmt = select(*keys, *measures).where(
        r.verified,
        r.occurred_at >= ranking_data.utc_start(period.start),
        r.occurred_at < ranking_data.utc_start(period.end + timedelta(days=1)),
    )
    if s.stage:
        stmt = stmt.where(r.stage == s.stage)
    if s.channel:
        stmt = stmt.where(r.channel == s.channel)
    if s.insurer_id is not None:
        stmt = stmt.where(r.insurer_id == s.insurer_id)
    branches = {
        b.id: b.region for b in conn.execute(select(Branch.id, Branch.region))
    }  # as _daily_tallies: scope by the branch's region
    out: dict[tuple[int, int], dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
    for iid, bid, channel, *m in conn.execute(stmt.group_by(*keys)):
        if s.scope.contains(branches.get(bid)):
            out[(iid, bid)][channel] += Tally.of(*m)
    return out


@contextlib.contextmanager
def naive_reads() -> Iterator[None]:
    """The ranking code reading raw ratings instead of rollups (recency off only)."""
    saved = ranking_data._daily_tallies
    ranking_data._daily_tallies = _raw_daily_tallies  # type: ignore[assignment]
    try:
        yield
    finally:
        ranking_data._daily_tallies = saved  # type: ignore[assignment]


CPU_MS: list[float] = []  # process CPU time of the last _page calls (SQLite: all work)


def _page(engine: Engine, s: Slice, method: rankings.Method) -> tuple[float, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    with reading(engine) as conn:
        data = rankings_pages._page(conn, s, method)
    ms = (time.perf_counter() - started) * 1000
    CPU_MS.append((time.process_time() - cpu) * 1000)
    rows = [r.as_json() for r in data["ranking"].rows]
    return ms, (rows, data["trend"])


SPEEDUP_FROM = 1_000_000  # the naive time grows with the ratings, the rollups' does not:
# the >= 100x target is the for 1M and 10M ratings; smaller runs report only.


def ranking_figures(db: Db, runs: int, target: bool) -> list[Figure]:
    engine = make_engine(db.url)
    method = load_settings(env_file="/nonexistent").ranking_method()
    s = ranking_slice()
    try:
        _page(engine, s, method)  # warm the page cache, as a serving app would be
        fast, slow, ratios, fast_cpu, slow_cpu = [], [], [], [], []
        reference = None
        for _ in range(runs):
            ms, got = _page(engine, s, method)
            fast_cpu.append(round(CPU_MS[-1], 2))
            with naive_reads():
                naive_ms, naive_got = _page(engine, s, method)
            slow_cpu.append(round(CPU_MS[-1], 2))
            if got != naive_got:
                raise AssertionError("rollups and raw ratings disagree on the ranking")
            reference = got
            fast.append(ms)
            slow.append(naive_ms)
            ratios.append(naive_ms / ms)
    finally:
        engine.dispose()
    tag = f"{label(db.size)}.{db.kind}"
    rows, _trend = reference or ([], None)
    detail = {
        "ratings": db.size,
        "database": db.kind,
        "period": s.period.label,
        "province": PROVINCE,
        "stage": STAGE,
        "insurers_ranked": sum(1 for r in rows if r["rank"] is not None),
        "what": "rankings_pages._page: ranking + previous period + reply figures + trend",
        "cpu_ms_rollups": fast_cpu,
        "cpu_ms_naive": slow_cpu,
    }
    title = f"Regulator ranking (quarter x province x stage), {label(db.size)} ratings, {db.kind}"
    return [
        Figure(
            name=f"ranking.rollups.{tag}",
            title=f"{title}, from rollups",
            unit="ms",
            runs=fast,
            better="lower",
            target=50.0 if target else None,
            detail=detail,
        ),
        Figure(
            name=f"ranking.naive.{tag}",
            title=f"{title}, naive GROUP BY over ratings",
            unit="ms",
            runs=slow,
            better="lower",
            detail=detail,
        ),
        Figure(
            name=f"ranking.speedup.{tag}",
            title=f"{title}: speed-up of rollups over the naive GROUP BY",
            unit="x",
            runs=ratios,
            better="higher",
            target=100.0 if target and db.size >= SPEEDUP_FROM else None,
            detail=detail
            | {
                "judged": "value: naive ms / rollup ms, per run pair",
                "naive_ms_median": statistics.median(slow),
            },
        ),
    ]


# -- search ---------------------------------------------------------------------------------

QUERIES = [
    dict(q="理赔", stage="claim"),
    dict(q="理赔 到账", province=PROVINCE),
    dict(q="态度", channel="web", sort="newest"),
    dict(q="客服 电话", stars=1, stars_max=2),
    dict(q="业务员 专业", verified=True),
    dict(q="等了", insurer="I01"),
    dict(q="续保", stage="renewal", sort="lowest"),
    dict(q="服务很好"),
    dict(q="拖了", province="110000", sort="newest"),
    dict(q="", insurer="I03", stage="issuance"),
    dict(q="柜台", sort="relevance"),
    dict(q="保费 解释", insurer="I02", verified=True),
    dict(q="赔款", stars=5),
    dict(q="投诉", sort="newest", page=2),
]


def _latencies(index: Any, count: int) -> list[float]:
    out = []
    for spec in itertools.islice(itertools.cycle(QUERIES), count):
        q = SearchQuery(**spec)
        started = time.perf_counter()
        result = index.search(q)
        out.append((time.perf_counter() - started) * 1000)
        if result.total and not result.facets:
            raise AssertionError("search returned no facets")
    return out


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _percentiles(index: Any, runs: int, count: int) -> tuple[list[float], list[float], list[float]]:
    """p50 and p95 of each of `runs` runs of `count` queries, and every latency."""
    p50s, p95s, every = [], [], []
    for _ in range(runs):
        lat = _latencies(index, count)
        every += lat
        p50s.append(_pct(lat, 50))
        p95s.append(_pct(lat, 95))
    return p50s, p95s, every


# The SQL fallback scans every review text for a two-character Chinese term (trigrams
# cannot index it): over the 1M reviews of a 10M database one query took 13-71 s, so
# the full run measures it on the smaller database; the 1M figures are in
# docs/performance.md, measured once.
SQL_MAX_REVIEWS = 200_000


def search_figures(db: Db, runs: int, quick: bool, *, meili: bool = True) -> list[Figure]:
    figures: list[Figure] = []
    reviews = db.info["phases"]["search_index"]["reviews"]
    backends: list[tuple[str, Any, int]] = []
    engine = make_engine(db.url)
    use_meili = meili and db.meili_dir is not None
    server_cm = _meili(db.meili_dir) if use_meili else contextlib.nullcontext()
    with server_cm as server:
        if server is not None:
            backends.append(("meilisearch", MeiliIndex(server.url, server.key), 400))
        if reviews <= SQL_MAX_REVIEWS:
            backends.append(("sql", SqlIndex(engine), 14 if not quick else 28))
        for name, index, count in backends:
            _latencies(index, 3 if name == "sql" else len(QUERIES))  # warm-up: caches
            p50s, p95s, every = _percentiles(index, runs, count)
            backend = index.name
            detail = {
                "reviews": reviews,
                "ratings": db.size,
                "database": db.kind,
                "backend": backend,
                "queries_per_run": count,
                "distinct_queries": len(QUERIES),
                "p99_ms_all_runs": round(_pct(every, 99), 2),
                "max_ms_all_runs": round(max(every), 2),
            }
            size = label(reviews // 1000 * 1000) if reviews >= 1000 else str(reviews)
            for p, vals in (("p95", p95s), ("p50", p50s)):
                figures.append(
                    Figure(
                        name=f"search.{name}.{p}.{label(db.size)}.{db.kind}",
                        title=f"Search {p} over {size} reviews ({backend}), filters and facets",
                        unit="ms",
                        runs=vals,
                        better="lower",
                        target=30.0 if (name == "meilisearch" and p == "p95") else None,
                        detail=detail,
                    )
                )
    engine.dispose()
    return figures


def scaled_index(db: Db, workdir: Path, target: int) -> Path:
    """A Meilisearch data directory holding `target` review documents: the database's
    reviews repeated with new ids and spread dates (a 1M-rating database has ~100k
    reviews; 1M reviews would need ~10M ratings, which take about an hour to generate).
    Made once and kept in workdir, like the databases."""
    directory = workdir / f"search-{label(target)}.meili"
    done = directory.with_suffix(".json")
    if done.exists():
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    engine = make_engine(db.url)
    docs = [doc for batch in documents.batches(engine, size=20_000) for doc in batch]
    engine.dispose()
    started = time.perf_counter()
    with _meili(directory) as server:
        assert server is not None
        index = MeiliIndex(server.url, server.key, task_timeout_ms=3_600_000)
        index.ensure()
        made, copy = 0, 0
        while made < target:
            chunk = [
                dataclasses.replace(
                    doc, id=f"{doc.id[:28]}{copy:04x}", occurred_at=doc.occurred_at - copy * 1800
                )
                for doc in docs[: target - made]
            ]
            for i in range(0, len(chunk), 50_000):
                index.index_reviews(chunk[i : i + 50_000])
            made += len(chunk)
            copy += 1
    seconds = time.perf_counter() - started
    done.write_text(json.dumps({"documents": made, "from_reviews": len(docs), "seconds": seconds}))
    return directory


def scaled_search_figures(db: Db, workdir: Path, runs: int, target: int) -> list[Figure]:
    """Meilisearch p50/p95 over `target` review documents (see scaled_index)."""
    directory = scaled_index(db, workdir, target)
    info = json.loads(directory.with_suffix(".json").read_text())
    figures: list[Figure] = []
    with _meili(directory) as server:
        assert server is not None
        index = MeiliIndex(server.url, server.key)
        _latencies(index, len(QUERIES))  # warm-up
        p50s, p95s, every = _percentiles(index, runs, 400)
    detail = {
        "documents": info["documents"],
        "from_reviews": info["from_reviews"],
        "index_seconds": round(info["seconds"], 1),
        "queries_per_run": 400,
        "distinct_queries": len(QUERIES),
        "p99_ms_all_runs": round(_pct(every, 99), 2),
    }
    for p, vals in (("p95", p95s), ("p50", p50s)):
        figures.append(
            Figure(
                name=f"search.meilisearch.{p}.{label(target)}_reviews",
                title=f"Search {p} over {label(target)} review documents (meilisearch), "
                "filters and facets",
                unit="ms",
                runs=vals,
                better="lower",
                target=30.0 if p == "p95" else None,
                detail=detail,
            )
        )
    return figures


# -- checkpoint ----------------------------------------------------------------------------


def _new_ratings(n: int, run: str) -> list[RatingIn]:
    """n fresh ratings of the generated insurers, occurred in the last hour."""
    now = datetime.now(CHINA)
    stream = scale.ratings_stream(n, SEED, now.date())
    rng = random.Random(run)
    out = []
    for i, r in enumerate(stream):
        when = now - timedelta(seconds=rng.randrange(60, 3600))
        out.append(dataclasses.replace(r, occurred_at=when, idempotency_key=f"cp-{run}-{i}"))
    return out


def checkpoint_figure(db: Db, runs: int, n: int) -> Figure:
    engine = scale._bulk_engine(db.url)
    settings = load_settings(env_file="/nonexistent")
    key = ledger.load_key(db.key_path, settings.ledger_origin)
    seconds, sizes, inserts, cpus = [], [], [], []
    try:
        if ledger.checkpoint(engine, key) is not None:  # left over from an aborted run
            pass
        subjects = None
        for _ in range(runs):
            batch = _new_ratings(n, f"{time.time_ns()}")
            started = time.perf_counter()
            for start in range(0, n, scale.BATCH):
                with engine.begin() as conn:
                    subjects = subjects or Subjects(conn)
                    record_many(conn, batch[start : start + scale.BATCH], subjects=subjects)
            inserts.append(time.perf_counter() - started)
            started, cpu = time.perf_counter(), time.process_time()
            cp = ledger.checkpoint(engine, key, batch=50_000)
            seconds.append(time.perf_counter() - started)
            cpus.append(round(time.process_time() - cpu, 3))
            sizes.append(cp.tree_size if cp else None)
    finally:
        engine.dispose()
    return Figure(
        name=f"checkpoint.{label(n)}.{db.kind}",
        title=f"Checkpoint: sequence and sign {label(n)} new ratings on top of "
        f"{label(db.size)} ({db.kind})",
        unit="s",
        runs=seconds,
        better="lower",
        target=2.0,  # for 100k new leaves (issue 9); fewer must not take longer
        detail={
            "new_ratings": n,
            "tree_sizes": sizes,
            "database": db.kind,
            "record_many_seconds": [round(x, 2) for x in inserts],
            "cpu_seconds": cpus,  # of this process: on SQLite all the work but fsync
            "target_note": "2 s for 100k new leaves (issue 9), kept for smaller n",
        },
    )


# -- the suite -------------------------------------------------------------------------------


def new_leaves(size: int) -> int:
    """1% of the tree: 100k on top of 10M (issue 9), 10k on top of 1M."""
    return max(1000, size // 100)


def _generation_figure(db: Db) -> Figure:
    """The generator's rate for this database (measured once, when it was made)."""
    ph = db.info["phases"]
    return Figure(
        name=f"generate.ratings.{label(db.size)}.{db.kind}",
        title=f"Scale generator: ratings through record_many, {label(db.size)}, {db.kind}",
        unit="rows/s",
        runs=[float(ph["ratings"]["rows_per_second"])],
        better="higher",
        detail={"phases": ph, "total_seconds": db.info["seconds"], "cached": True},
    )


def have_meili() -> bool:
    try:
        meili_server.binary()
    except FileNotFoundError:
        return False
    return True


def run(
    *,
    quick: bool,
    runs: int,
    workdir: Path,
    postgres_url: str | None,
    sizes: tuple[int, int] | None = None,
) -> list[Figure]:
    small, large = sizes or (QUICK if quick else FULL)
    progress = sys.stderr.isatty()
    meili = have_meili()
    figures: list[Figure] = []
    dbs = [
        sqlite_db(workdir, small, meili=False, progress=progress),
        sqlite_db(workdir, large, meili=meili, progress=progress),
    ]
    for db in dbs:
        figures.append(_generation_figure(db))
        figures += ranking_figures(db, runs, target=True)
    figures += search_figures(dbs[1], runs, quick)
    own_reviews = dbs[1].info["phases"]["search_index"]["reviews"]
    if own_reviews > SQL_MAX_REVIEWS:
        figures += search_figures(dbs[0], runs, quick, meili=False)  # the SQL fallback
    if meili and not quick and own_reviews < 0.9 * SEARCH_DOCUMENTS:
        # The size, 1M reviews, which only a 10M database has of its own (its
        # ~10% of texts: 999,216): a smaller one's reviews are repeated into an index
        # of 1M (~3-11 min, made once).
        figures += scaled_search_figures(dbs[1], workdir, runs, SEARCH_DOCUMENTS)
    figures.append(checkpoint_figure(dbs[1], runs, new_leaves(large)))
    if postgres_url:
        with postgres_db(postgres_url, small, progress) as pg:
            figures.append(_generation_figure(pg))
            figures += ranking_figures(pg, runs, target=True)
            figures += [f for f in search_figures(pg, runs, quick) if ".sql." in f.name]
            figures.append(checkpoint_figure(pg, runs, new_leaves(small)))
    return figures


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data_figures")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--out", type=Path, default=HERE / "data_results.json")
    parser.add_argument("--sizes", default=None, help="SMALL,LARGE ratings, e.g. 100000,1000000")
    a = parser.parse_args(argv)
    sizes = tuple(int(x) for x in a.sizes.split(",")) if a.sizes else None
    started = time.perf_counter()
    figures = run(
        quick=a.quick,
        runs=a.runs,
        workdir=a.workdir,
        postgres_url=a.postgres_url,
        sizes=sizes,  # type: ignore[arg-type]
    )
    body = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": a.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "figures": [f.as_json() for f in figures],
    }
    a.out.write_text(json.dumps(body, indent=2, ensure_ascii=False, default=str) + "\n")
    for f in figures:
        verdict = {True: "met", False: "NOT met", None: "-"}[f.meets()]
        print(
            f"{f.name:45} median {f.median:10.2f} {f.unit:6} "
            f"(min {min(f.runs):.2f}, max {max(f.runs):.2f}) target {f.target} {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
