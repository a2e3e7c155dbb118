"""The scale generator: N ratings through the real bulk write path, timed per phase.

    .venv/bin/python -m bench.scale --ratings 1000000 --database-url sqlite:///var/bench/1m.db \
        [--meili-url URL --meili-key KEY] [--seed 1]

Fills a freshly migrated database with 40 insurers, branches in the 31 mainland
provinces (real GB/T 2260 city codes), their staff, and N ratings spread over 3 stages,
3 channels and the 24 months before today, with Chinese review texts on a share of the
web ratings (10% of all ratings: 1M reviews at 10M ratings). Every rating goes through
`portal.ratings.record_many`, which is what `record()` runs: validation, normalisation,
fingerprint, leaf hash, text commitment, abuse flags, rollups, outbox and ledger queue.
Then the checkpointer sequences and signs all of them (`portal.ledger.checkpoint`) and
the search index is built (Meilisearch when given, and SQLite's FTS5 table for the SQL
fallback), after which the outbox rows are marked done as the worker would.

Bulk-load settings, legitimate for a fresh benchmark database only: batches of 50,000
ratings per record_many call and transaction (the rollup rows of a batch add up before
they are written: fewer upserts per rating), and commits that do not wait for the disk
(`_bulk_engine(fresh_load=True)`; a crash means generating again). Every rating still
goes through the same validation, normalisation, hashing, rollups and queues.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import itertools
import json
import math
import os
import random
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, func, select, text, update
from sqlalchemy.engine import make_url

from portal import directory, ledger
from portal.config import load_settings
from portal.db import make_engine, migrate
from portal.demo_data import review_text
from portal.models import Outbox, Rating
from portal.ratings import CHINA, RatingIn, Subjects, record_many
from portal.search import documents
from portal.search.meili import MeiliIndex
from portal.search.sql import SqlIndex

MONTHS = 24
INSURERS = 40
STAGES = ("issuance", "renewal", "claim")
CHANNELS = (("counter", 0.40), ("phone", 0.35), ("web", 0.25))
STAGE_WEIGHTS = {
    "counter": (0.35, 0.40, 0.25),
    "phone": (0.35, 0.25, 0.40),
    "web": (0.25, 0.25, 0.50),
}
WEB_TEXT_SHARE = 0.40  # of web ratings: 10% of all ratings carry a review text
BATCH = 50_000  # ratings per record_many call and transaction (rollup rows add up within it)
TEXT_POOL = 12_000  # distinct review texts, over (stage, stars, insurer kind)

# One branch per province capital (31 mainland provinces), a second city in the largest.
CITIES = {
    "110000": "北京", "120000": "天津", "130100": "石家庄", "140100": "太原",
    "150100": "呼和浩特", "210100": "沈阳", "220100": "长春", "230100": "哈尔滨",
    "310000": "上海", "320100": "南京", "330100": "杭州", "340100": "合肥",
    "350100": "福州", "360100": "南昌", "370100": "济南", "410100": "郑州",
    "420100": "武汉", "430100": "长沙", "440100": "广州", "450100": "南宁",
    "460100": "海口", "500000": "重庆", "510100": "成都", "520100": "贵阳",
    "530100": "昆明", "540100": "拉萨", "610100": "西安", "620100": "兰州",
    "630100": "西宁", "640100": "银川", "650100": "乌鲁木齐",
    "210200": "大连", "320500": "苏州", "330200": "宁波", "350200": "厦门",
    "370200": "青岛", "440300": "深圳", "430200": "株洲", "420500": "宜昌",
}  # fmt: skip
# Rough weights (population and insurance density) per province prefix.
PROVINCE_WEIGHT = {
    "11": 3, "12": 1.5, "13": 3, "14": 1.5, "15": 1, "21": 2, "22": 1, "23": 1.2, "31": 3.5,
    "32": 5, "33": 4.5, "34": 2.5, "35": 2.5, "36": 1.8, "37": 4.5, "41": 3.5, "42": 3,
    "43": 2.8, "44": 6, "45": 1.6, "46": 0.6, "50": 2, "51": 3.5, "52": 1.2, "53": 1.5,
    "54": 0.2, "61": 2, "62": 0.8, "63": 0.3, "64": 0.4, "65": 1,
}  # fmt: skip
_SYLLABLES = "安华泰平康太保人寿民生国信中宏鼎和泰众诚永安长城阳光大地天元锦泰诚泰紫金"


@dataclasses.dataclass(frozen=True)
class _Insurer:
    code: str
    name: str
    kind: str
    quality: float
    weight: float
    regions: tuple[str, ...]


@dataclasses.dataclass
class _World:
    insurers: list[_Insurer]
    branches: dict[str, list[tuple[str, str]]]  # insurer -> [(branch code, region)]
    staff: dict[tuple[str, str], list[str]]  # (branch code, role) -> staff numbers
    call_agents: dict[str, list[str]]  # insurer -> staff numbers


def _world(rng: random.Random) -> _World:
    cities = list(CITIES)
    insurers = []
    for i in range(INSURERS):
        code = f"I{i + 1:02d}"
        kind = "property" if i % 2 == 0 else "life"
        a, b = rng.sample(range(len(_SYLLABLES)), 2)
        name = (
            f"{_SYLLABLES[a]}{_SYLLABLES[b]}{'财产' if kind == 'property' else '人寿'}保险{i + 1}号"
        )
        national = i < 12  # the big ones are everywhere; the others in 8-20 places
        regions = cities if national else rng.sample(cities, rng.randint(8, 20))
        insurers.append(
            _Insurer(
                code,
                name,
                kind,
                quality=rng.uniform(0.25, 0.92),
                weight=1.0 / (i + 1) ** 0.7,
                regions=tuple(regions),
            )
        )
    branches: dict[str, list[tuple[str, str]]] = {}
    staff: dict[tuple[str, str], list[str]] = {}
    call_agents: dict[str, list[str]] = {}
    for ins in insurers:
        branches[ins.code] = [(f"{ins.code}-{r}", r) for r in ins.regions]
        n = itertools.count(1)
        for bcode, _region in branches[ins.code]:
            for role, count in (("teller", 3), ("agent", 2), ("adjuster", 1)):
                staff[(bcode, role)] = [f"S{next(n):05d}" for _ in range(count)]
        call_agents[ins.code] = [f"S{next(n):05d}" for _ in range(6)]
    return _World(insurers, branches, staff, call_agents)


def _load_directory(engine: Engine, world: _World) -> int:
    rows = []
    with engine.begin() as conn:
        for ins in world.insurers:
            directory.add_insurer(conn, ins.code, ins.name)
            for bcode, region in world.branches[ins.code]:
                name = f"{ins.name}{CITIES[region]}分公司"
                directory.add_branch(conn, ins.code, bcode, name, region)
                for role in ("teller", "agent", "adjuster"):
                    rows += [
                        directory.StaffRow(ins.code, bcode, no, f"员工{no}", role)
                        for no in world.staff[(bcode, role)]
                    ]
            head = world.branches[ins.code][0][0]
            rows += [
                directory.StaffRow(ins.code, head, no, f"坐席{no}", "call_agent")
                for no in world.call_agents[ins.code]
            ]
        directory.import_staff(conn, rows)
    return len(rows)


class _Picker:
    """Weighted choice by bisect on precomputed cumulative weights (rng.choices rebuilds
    them on every call)."""

    def __init__(self, items: list[Any], weights: list[float]) -> None:
        self.items = items
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


def _texts(rng: random.Random) -> dict[tuple[str, int, str], list[str]]:
    per = max(1, TEXT_POOL // (len(STAGES) * 5 * 2))
    return {
        (stage, stars, kind): [review_text(rng, stage, stars, kind) for _ in range(per)]
        for stage in STAGES
        for stars in range(1, 6)
        for kind in ("property", "life")
    }


def _level(rng: random.Random, mu: float, mid_share: float) -> int:
    """1..5, J-shaped like real ratings (as portal.demo_data draws them)."""
    if rng.random() < mid_share:
        return 3
    if rng.random() < 1.0 / (1.0 + math.exp(-1.7 * (mu - 3.0))):
        return 5 if rng.random() < 0.68 else 4
    return 1 if rng.random() < 0.55 else 2


STAGE_OFFSET = {"issuance": 0.2, "renewal": 0.0, "claim": -0.45}
CHANNEL_OFFSET = {"counter": 0.9, "phone": 0.1, "web": -0.3}
MID_SHARE = {"counter": 0.08, "phone": 0.15, "web": 0.12}


def _days(end: date, months: int = MONTHS) -> list[date]:
    """The days of the `months` months up to and including `end`."""
    first = end - timedelta(days=round(months * 365.25 / 12) - 1)
    return [first + timedelta(days=k) for k in range((end - first).days + 1)]


def _per_day(n: int, days: list[date]) -> list[int]:
    """Exactly n ratings over the days: growing over time, fewer at weekends."""
    weights = [
        (0.8 + 0.5 * i / max(1, len(days) - 1)) * (1.0, 1, 1, 1, 1.02, 0.6, 0.45)[d.weekday()]
        for i, d in enumerate(days)
    ]
    total = sum(weights)
    counts = [int(n * w / total) for w in weights]
    for i in range(n - sum(counts)):
        counts[-1 - (i % len(counts))] += 1
    return counts


def ratings_stream(n: int, seed: int, end: date) -> Iterator[RatingIn]:
    """N ratings in time order (a day at a time), deterministic for a seed."""
    rng = random.Random(seed)
    world = _world(random.Random(seed))
    texts = _texts(random.Random(seed + 1))
    pick_insurer = _Picker(world.insurers, [i.weight for i in world.insurers])
    pick_channel = _Picker([c for c, _ in CHANNELS], [w for _, w in CHANNELS])
    pick_stage = {c: _Picker(list(STAGES), list(w)) for c, w in STAGE_WEIGHTS.items()}
    pick_branch = {
        ins.code: _Picker(
            world.branches[ins.code], [PROVINCE_WEIGHT[r[:2]] for _, r in world.branches[ins.code]]
        )
        for ins in world.insurers
    }
    effect = {b: rng.gauss(0, 0.2) for bs in world.branches.values() for b, _ in bs}
    seq = itertools.count()
    for day, count in zip(days := _days(end), _per_day(n, days), strict=True):
        base = datetime(day.year, day.month, day.day, 8, 30, tzinfo=CHINA)
        times = sorted(rng.randrange(0, 12 * 3600) for _ in range(count))
        for offset in times:
            i = next(seq)
            ins = pick_insurer(rng)
            channel = pick_channel(rng)
            stage = pick_stage[channel](rng)
            branch, _region = pick_branch[ins.code](rng)
            staff_no: str | None
            scale, verified, text = 3, True, None
            if channel == "counter":
                staff_no = rng.choice(world.staff[(branch, "teller")])
                source = f"device:{branch}-{staff_no[-1]}"
            elif channel == "phone":
                role = {"issuance": "agent", "claim": "adjuster"}.get(stage)
                if role and rng.random() < 0.5:
                    staff_no = rng.choice(world.staff[(branch, role)])
                else:
                    staff_no = rng.choice(world.call_agents[ins.code])
                    branch = None  # a call agent's branch comes from the staff record
                scale = 5 if rng.random() < 0.7 else 3
                source = f"client:{ins.code}"
            else:
                scale, source = 5, "web"
                verified = rng.random() < 0.85
                staff_no = None
                if rng.random() < 0.4:
                    branch = None
                elif rng.random() < 0.5:
                    role = {"issuance": "agent", "renewal": "teller", "claim": "adjuster"}[stage]
                    staff_no = rng.choice(world.staff[(branch, role)])
            mu = 1.85 + 2.6 * ins.quality + STAGE_OFFSET[stage] + CHANNEL_OFFSET[channel]
            level = _level(rng, mu + (effect[branch] if branch else 0.0), MID_SHARE[channel])
            value = level if scale == 5 else (1 if level >= 4 else 2 if level == 3 else 3)
            if channel == "web" and rng.random() < WEB_TEXT_SHARE:
                text = rng.choice(texts[(stage, level, ins.kind)])
            yield RatingIn(
                insurer=ins.code,
                stage=stage,
                channel=channel,
                scale=scale,
                value=value,
                occurred_at=base + timedelta(seconds=offset),
                source=source,
                idempotency_key=f"scale-{seed}-{i}",
                branch=branch,
                staff_no=staff_no,
                text=text,
                verified=verified,
            )


def recorded_after(r: RatingIn) -> datetime:
    """When the rating reached the portal: seconds after the counter press, minutes
    after a call, any time up to a day after a web visit (deterministic per key)."""
    h = zlib.crc32(r.idempotency_key.encode())
    delay = {"counter": 2 + h % 20, "phone": 60 + h % 600, "web": h % 86_400}[r.channel]
    return r.occurred_at + timedelta(seconds=delay)


class Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.done, self.started, self.shown = 0, time.perf_counter(), 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self.shown > 0.5 or self.done >= self.total):
            self.shown = now
            rate = self.done / max(now - self.started, 1e-9)
            share = self.done / self.total if self.total else 1.0
            bar = "#" * int(30 * share)
            eta = (self.total - self.done) / rate if rate else 0
            sys.stderr.write(
                f"\r{self.label} [{bar:<30}] {self.done:,}/{self.total:,} "
                f"{rate:,.0f}/s eta {eta:,.0f}s "
            )
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _bulk_engine(url: str, *, fresh_load: bool = False) -> Engine:
    """The app's engine, with a page cache big enough for millions of random-key index
    inserts on SQLite (a connection setting: durability and checks are unchanged).

    `fresh_load`: the generator filling a new benchmark database, which is made again
    from scratch if the machine crashes mid-way (bench.data_figures writes its info file
    last). Commits then do not wait for the disk (SQLite synchronous=OFF, PostgreSQL
    synchronous_commit=off): no check, trigger, constraint or write-path step is
    skipped, only the fsync. Never for the measured checkpoint or ingest figures."""
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _cache(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA cache_size=-1000000")  # 1 GB
            if fresh_load:
                dbapi_conn.execute("PRAGMA synchronous=OFF")

    elif fresh_load:

        @event.listens_for(engine, "connect")
        def _async_commit(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET synchronous_commit = off")
            dbapi_conn.commit()

    return engine


def key_path_for(database_url: str) -> Path:
    """Where the generated ledger's signing key lives: beside a SQLite file, else in
    var/bench/keys/<database>.pem."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return Path(url.database).with_suffix(".ledger.pem")
    root = Path(__file__).resolve().parent.parent / "var" / "bench" / "keys"
    return root / f"{url.host}-{url.port}-{url.database}.pem"


def index_search(
    engine: Engine, meili: tuple[str, str] | None, progress: bool, total: int
) -> dict[str, Any]:
    """Every visible review into Meilisearch (if given) and the SQL fallback's FTS5
    table (SQLite), as `portal search reindex` would, then the outbox marked done."""
    out: dict[str, Any] = {"reviews": 0}
    started = time.perf_counter()
    meili_index = MeiliIndex(*meili, task_timeout_ms=3_600_000) if meili else None
    sql_index = SqlIndex(engine) if engine.dialect.name == "sqlite" else None
    tasks = []
    if meili_index:
        meili_index.ensure()
    bar = Progress(total, "search index", progress)
    for batch in documents.batches(engine, size=20_000):
        docs = list(batch)
        if meili_index:  # queued, not awaited: Meilisearch batches the tasks itself
            index = meili_index.client.index(meili_index.uid)
            tasks.append(index.add_documents([asdict(d) for d in docs], primary_key="id"))
        if sql_index:
            sql_index.index_reviews(docs)
        out["reviews"] += len(docs)
        bar.update(len(docs))
    if meili_index:
        for info in tasks:
            meili_index._wait(info)
        out["meilisearch_seconds"] = round(time.perf_counter() - started, 2)
    marked = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            update(Outbox).where(Outbox.done_at.is_(None)).values(done_at=func.current_timestamp())
        )
    out["outbox_seconds"] = round(time.perf_counter() - marked, 2)
    return out


def generate(
    database_url: str,
    ratings: int,
    *,
    seed: int = 1,
    meili: tuple[str, str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fill a freshly migrated database with `ratings` ratings; timings per phase."""
    base = load_settings(env_file="/nonexistent")
    key_path = key_path_for(database_url)
    settings = dataclasses.replace(
        base, database_url=database_url, ledger_key_path=key_path, meili_url=None
    )
    migrate(settings)
    engine = _bulk_engine(database_url, fresh_load=True)
    key = ledger.load_key(key_path, settings.ledger_origin, create=True)
    phases: dict[str, dict[str, Any]] = {}
    try:
        with engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(Rating)).scalar_one():
                raise RuntimeError(f"{database_url} already has ratings: use a fresh database")
        started = time.perf_counter()
        staff = _load_directory(engine, _world(random.Random(seed)))
        phases["directory"] = {"seconds": round(time.perf_counter() - started, 2), "staff": staff}

        end = datetime.now(CHINA).date() - timedelta(days=1)
        timings: dict[str, float] = {}
        bar = Progress(ratings, "ratings", progress)
        started, cpu_started = time.perf_counter(), time.process_time()
        subjects: Subjects | None = None
        stream = ratings_stream(ratings, seed, end)
        texts = 0
        generating = 0.0
        while True:
            t = time.perf_counter()
            batch = list(itertools.islice(stream, BATCH))
            generating += time.perf_counter() - t
            if not batch:
                break
            texts += sum(1 for r in batch if r.text)
            with engine.begin() as conn:
                subjects = subjects or Subjects(conn)
                record_many(
                    conn, batch, recorded_at=recorded_after, subjects=subjects, timings=timings
                )
            bar.update(len(batch))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        phases["ratings"] = {
            "seconds": round(seconds, 2),
            "rows_per_second": round(ratings / seconds),
            "cpu_seconds": round(cpu, 2),
            "rows_per_cpu_second": round(ratings / cpu) if cpu else None,
            "texts": texts,
            "generating_inputs_seconds": round(generating, 2),
            **{f"{k}_seconds": round(v, 2) for k, v in timings.items()},
        }
        phases["rollups"] = {
            "seconds": round(timings.get("rollups", 0.0), 2),
            "note": "inside the ratings phase: the same rollups.add as record(), per batch",
        }
        started, cpu_started = time.perf_counter(), time.process_time()
        cp = ledger.checkpoint(engine, key, batch=50_000)
        seconds = time.perf_counter() - started
        phases["checkpoint"] = {
            "seconds": round(seconds, 2),
            "cpu_seconds": round(time.process_time() - cpu_started, 2),
            "rows_per_second": round(ratings / seconds) if seconds else None,
            "tree_size": cp.tree_size if cp else 0,
        }
        started = time.perf_counter()
        search = index_search(engine, meili, progress, texts)
        seconds = time.perf_counter() - started
        phases["search_index"] = {
            "seconds": round(seconds, 2),
            "docs_per_second": round(search["reviews"] / seconds) if seconds else None,
            **search,
        }
        if engine.dialect.name == "postgresql":
            # As autovacuum would, in time: without statistics the planner takes the
            # freshly loaded rollups for empty (measured: a ranking query 432 ms -> 9 ms).
            started = time.perf_counter()
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
            phases["analyze"] = {"seconds": round(time.perf_counter() - started, 2)}
    finally:
        engine.dispose()
    total = sum(p["seconds"] for k, p in phases.items() if k != "rollups")
    return {
        "load_average": [round(x, 1) for x in os.getloadavg()],  # a shared machine shows here
        "rows": ratings,
        "seed": seed,
        "database": make_url(database_url).get_backend_name(),
        "seconds": round(total, 2),
        "rows_per_second": round(ratings / total) if total else None,
        "ledger_key": str(key_path),
        "phases": phases,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--ratings", type=int, default=100_000)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--meili-url")
    parser.add_argument("--meili-key", default="")
    parser.add_argument("--quiet", action="store_true")
    a = parser.parse_args(argv)
    meili = (a.meili_url, a.meili_key) if a.meili_url else None
    result = generate(a.database_url, a.ratings, seed=a.seed, meili=meili, progress=not a.quiet)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
