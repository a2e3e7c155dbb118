"""Rating ingest figures: the counter and phone endpoints under wrk, on SQLite and
PostgreSQL, with 1 and 2 uvicorn workers, as a ratio to the bare POST ceiling.

Every request is distinct and must be accepted (201):
- counter: each rating rates its own open service session (sessions are inserted
  before each run, as `open_session` would have; the measured request is the press),
  with the device's bearer token and a fresh idempotency key. Devices rate at most
  once a minute each (occurred_at spaced 61 s apart per device), so no burst flags.
- phone: a hotline keypad rating per request, HMAC-SHA256 signed over the timestamp
  and body (generated just before the run, inside the 300 s window), call_id unique.
After each run the database must hold at least as many ratings as wrk counted.

The full run also measures the durable-write floor (bench/floor_app.py): the bare POST
plus one row committed through the portal's writer before the 201. Its ratio to the
ceiling is what any endpoint that keeps what it acknowledges reaches at most here; it
has no target of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url

from bench import http
from bench.figures import Figure
from portal import credentials, directory
from portal.canonical import parts_fingerprint
from portal.config import load_settings
from portal.db import make_engine, migrate
from portal.ids import new_id
from portal.ledger import load_key
from portal.models import CounterSession, Rating, Staff

INSURER = "BQ"
BRANCHES = 10
STAFF_PER_BRANCH = 10
DEVICES = 200  # x 1,416 presses each within the 24 h window: 283k distinct ratings
STAGES = ("issuance", "renewal", "claim")
COUNTER = "/api/v1/counter/ratings"
PHONE = "/api/v1/phone/ratings"
TARGET = 0.40  # of the bare POST ceiling with the same worker count
RSS_TARGET_MB = 250.0


@dataclasses.dataclass
class Fixture:
    """One benchmark database with its insurer, branches, staff, devices and client."""

    url: str
    env: dict[str, str]
    engine: Engine
    insurer_id: int
    devices: list[tuple[int, int, str]]  # (device id, branch id, token)
    staff: dict[int, list[tuple[int, str]]]  # branch id -> [(staff id, staff_no)]
    client_id: str
    secret: str
    base: datetime  # counter presses go back from here, 61 s per device
    next_k: int = 0
    drop: Callable[[], None] | None = None

    def ratings(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Rating)).scalar_one())


def _settings(url: str, workdir: Path) -> Any:
    base = load_settings(env_file="/nonexistent")
    return dataclasses.replace(
        base,
        database_url=url,
        environment="development",
        ledger_key_path=workdir / "ledger.pem",
        phone_key_path=workdir / "phone.key",
        meili_url=None,
        checkpoint_interval=0,
    )


def server_env(url: str, ledger_key: Path, phone_key: Path) -> dict[str, str]:
    """The environment of a benchmarked portal: this database and keys, no checkpoint
    loop, no Meilisearch (search is measured on its own in bench/data_figures.py)."""
    return {
        "DATABASE_URL": url,
        "LEDGER_KEY_PATH": str(ledger_key),
        "PHONE_KEY_PATH": str(phone_key),
        "CHECKPOINT_INTERVAL": "0",
        "MEILI_URL": "",
        "ENVIRONMENT": "test",  # not development: templates are not re-read per request
    }


def make_database(
    backend: str, name: str, workdir: Path, postgres_url: str | None
) -> tuple[str, Callable[[], None]]:
    """A fresh, empty database: (url, drop)."""
    if backend == "sqlite":
        path = workdir / f"{name}.db"
        for p in workdir.glob(f"{name}.db*"):
            p.unlink()
        return f"sqlite:///{path}", lambda: [p.unlink() for p in workdir.glob(f"{name}.db*")]
    assert postgres_url
    admin = make_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return make_url(postgres_url).set(database=name).render_as_string(hide_password=False), drop


def fixture(backend: str, name: str, workdir: Path, postgres_url: str | None) -> Fixture:
    workdir.mkdir(parents=True, exist_ok=True)
    url, drop = make_database(backend, name, workdir, postgres_url)
    settings = _settings(url, workdir)
    migrate(settings)
    load_key(settings.ledger_key_path, settings.ledger_origin, create=True)
    engine = make_engine(url)
    staff: dict[int, list[tuple[int, str]]] = {}
    devices = []
    with engine.begin() as conn:
        iid = directory.add_insurer(conn, INSURER, "基准测试保险")
        branch_codes = [f"B{b:02d}" for b in range(BRANCHES)]
        for code in branch_codes:
            directory.add_branch(conn, INSURER, code, f"基准测试{code}支公司", "430200")
        directory.import_staff(
            conn,
            [
                directory.StaffRow(INSURER, code, f"{code}S{s:02d}", f"员工{code}{s}", "counter")
                for code in branch_codes
                for s in range(STAFF_PER_BRANCH)
            ],
        )
        for row in conn.execute(select(Staff.id, Staff.staff_no, Staff.branch_id)):
            staff.setdefault(row.branch_id, []).append((row.id, row.staff_no))
        for d in range(DEVICES):
            code = branch_codes[d % BRANCHES]
            device_id, token = credentials.add_device(conn, INSURER, code, f"窗口{d}")
            bid = directory.branch_id(conn, iid, code)
            devices.append((device_id, bid, token))
        client_id, secret = credentials.add_client(conn, INSURER)
    env = server_env(url, settings.ledger_key_path, settings.phone_key_path)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    return Fixture(url, env, engine, iid, devices, staff, client_id, secret, base, drop=drop)


def counter_requests(fx: Fixture, n: int) -> list[bytes]:
    """n presses, each on its own freshly inserted open session."""
    sessions, reqs = [], []
    for k in range(fx.next_k, fx.next_k + n):
        device_id, bid, token = fx.devices[k % len(fx.devices)]
        staff_id, staff_no = fx.staff[bid][k % STAFF_PER_BRANCH]
        stage = STAGES[k % 3]
        pressed = fx.base - timedelta(seconds=61 * (k // len(fx.devices)))
        opened = pressed - timedelta(minutes=5)
        sid = new_id()  # as the portal makes them (time-ordered)
        sessions.append(
            dict(
                id=sid,
                device_id=device_id,
                insurer_id=fx.insurer_id,
                branch_id=bid,
                staff_id=staff_id,
                stage=stage,
                ticket=None,
                idempotency_key=f"s{k}",
                fingerprint=parts_fingerprint(staff_no, stage, None),
                opened_at=opened,
                expires_at=opened + timedelta(hours=2),
            )
        )
        body = json.dumps(
            {
                "session_id": sid,
                "level": ("satisfied", "basic", "dissatisfied")[k % 7 % 3],
                "idempotency_key": f"r{k}",
                "occurred_at": pressed.astimezone().isoformat(),
            }
        ).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        reqs.append(http.raw_request("POST", COUNTER, headers, body))
    fx.next_k += n
    table: Any = CounterSession.__table__
    with fx.engine.begin() as conn:
        for i in range(0, len(sessions), 5000):
            conn.execute(table.insert(), sessions[i : i + 5000])
    return reqs


def phone_requests(fx: Fixture, n: int) -> list[bytes]:
    """n hotline keypad ratings, each signed now (valid for 300 s)."""
    stamp = str(int(datetime.now(UTC).timestamp()))
    occurred = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0).isoformat()
    agents = [no for team in fx.staff.values() for _, no in team]
    run = secrets.token_hex(4)
    reqs = []
    for k in range(n):
        body = json.dumps(
            {
                "call_id": f"call-{run}-{k}",
                "kind": "hotline",
                "stage": STAGES[k % 3],
                "digits": str(1 + k % 7 % 5),
                "scale": 5,
                "occurred_at": occurred,
                "agent_no": agents[k % len(agents)],
            }
        ).encode()
        mac = hmac.new(fx.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        headers = {
            "X-Client-Id": fx.client_id,
            "X-Timestamp": stamp,
            "X-Signature": "sha256=" + mac.hexdigest(),
            "Content-Type": "application/json",
        }
        reqs.append(http.raw_request("POST", PHONE, headers, body))
    return reqs


def _load(
    server: http.Server,
    path: str,
    make: Callable[[int], list[bytes]],
    duration: float,
    runs: int,
    workdir: Path,
    check: Callable[[int], None] | None = None,
) -> list[http.WrkResult]:
    """A 1 s warm-up sizes the request files; then `runs` measured runs."""
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = workdir / "requests"
    # 1 s must not run out of distinct requests: the bare ceiling with 2 workers did
    # ~9,000 req/s on the machine of 2026-12-03 and 17,500 on that of 2026-12-04.
    http.write_request_file(prefix, make(40_000))
    warm = http.wrk(server.url + path, 1, workdir, files=prefix)
    if warm.non_2xx or warm.exhausted:
        raise RuntimeError(f"warm-up of {path} failed: {warm.brief()}\n{warm.raw[-2000:]}")
    if check:
        check(warm.requests)
    per_second = max(warm.rps, 500)
    results = []
    for _ in range(runs):
        http.write_request_file(prefix, make(int(per_second * duration * 2.5) + 4000))
        r = http.wrk(server.url + path, duration, workdir, files=prefix, rss_pids=[server.pid])
        if check:
            check(r.requests)
        results.append(r)
        print(f"    {path}: {r.brief()}", flush=True)
    return results


def _all_stored(stored: Callable[[], int]) -> Callable[[int], None]:
    """A check for `_load`: after each run the database holds at least as many rows as
    wrk counted answered requests, over all runs so far."""
    sent = [0]

    def check(requests: int) -> None:
        sent[0] += requests
        held = stored()
        if held < sent[0]:
            raise RuntimeError(f"wrk counted {sent[0]} accepted requests, the database has {held}")

    return check


def _bare_requests() -> Callable[[int], list[bytes]]:
    """Counter-shaped requests for the bare endpoints, each with its own key."""
    n = [0]

    def make(count: int) -> list[bytes]:
        body = (
            b'{"session_id": "%s", "level": "satisfied", "idempotency_key": "r%d", '
            b'"occurred_at": "2026-01-01T08:00:00+08:00"}'
        )
        headers = {"Authorization": "Bearer gpd_x", "Content-Type": "application/json"}
        out = []
        for k in range(n[0], n[0] + count):
            data = body % (secrets.token_hex(16).encode(), k)
            out.append(http.raw_request("POST", COUNTER, headers, data))
        n[0] += count
        return out

    return make


def ceiling(workers: int, duration: float, runs: int, workdir: Path) -> list[http.WrkResult]:
    """The bare POST ceiling, fed the same counter-shaped request files."""
    server = http.Server("bench.bare_app:app", workers, ready_path="/ping")
    with http.serving(server, workdir):
        return _load(server, COUNTER, _bare_requests(), duration, runs, workdir)


def floor(
    backend: str,
    workers: int,
    duration: float,
    runs: int,
    workdir: Path,
    postgres_url: str | None,
    ceiling_median: float,
) -> Figure:
    """The durable-write floor (bench/floor_app.py) on a fresh database."""
    from bench.floor_app import FLOOR

    workdir.mkdir(parents=True, exist_ok=True)
    url, drop = make_database(backend, f"bench_floor_{backend}_w{workers}", workdir, postgres_url)
    engine = make_engine(url)
    FLOOR.metadata.create_all(engine)

    def stored() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(FLOOR)).scalar_one())

    server = http.Server(
        "bench.floor_app:app", workers, env={"BENCH_FLOOR_URL": url}, ready_path="/ping"
    )
    try:
        with http.serving(server, workdir):
            check = _all_stored(stored)
            results = _load(server, COUNTER, _bare_requests(), duration, runs, workdir, check)
    finally:
        engine.dispose()
        drop()
    return Figure(
        name=f"floor.insert.{backend}.w{workers}",
        title=f"Durable-write floor: bare POST + one row committed, {backend}, {workers} worker(s)",
        unit="req/s",
        runs=[r.rps for r in results],
        ceiling=ceiling_median,
        ceiling_name=f"ceiling.post.w{workers}",
        detail={"p99_ms": [r.p99_ms for r in results]},
    )


def run(
    *,
    quick: bool,
    runs: int,
    workdir: Path,
    postgres_url: str | None,
    duration: float,
) -> list[Figure]:
    figures: list[Figure] = []
    backends = ["sqlite"] + (["postgres"] if postgres_url else [])
    for workers in (1, 2):
        print(f"  bare POST ceiling, {workers} worker(s)", flush=True)
        bare = ceiling(workers, duration, runs, workdir / f"bare-w{workers}")
        bare_rps = [r.rps for r in bare]
        figures.append(
            Figure(
                name=f"ceiling.post.w{workers}",
                title=f"Bare Starlette POST (same JSON), {workers} worker(s)",
                unit="req/s",
                runs=bare_rps,
                detail={"p99_ms": [r.p99_ms for r in bare]},
            )
        )
        ceiling_median = figures[-1].median
        for backend in backends:
            if not quick:
                print(f"  durable-write floor, {backend}, {workers} worker(s)", flush=True)
                sub = workdir / f"floor-{backend}-w{workers}"
                figures.append(
                    floor(backend, workers, duration, runs, sub, postgres_url, ceiling_median)
                )
            fx = fixture(backend, f"bench_http_{backend}_w{workers}", workdir, postgres_url)
            try:
                figures += _measure_backend(
                    fx, backend, workers, duration, runs, workdir, ceiling_median
                )
            finally:
                fx.engine.dispose()
                if fx.drop:
                    fx.drop()
    return figures


def _measure_backend(
    fx: Fixture,
    backend: str,
    workers: int,
    duration: float,
    runs: int,
    workdir: Path,
    ceiling_median: float,
) -> list[Figure]:
    figures = []
    check = _all_stored(fx.ratings)

    server = http.Server("app:app", workers, env=fx.env, ready_path="/api/v1/openapi.json")
    rss: list[float] = []
    with http.serving(server, workdir):
        for channel, path, make in (
            ("counter", COUNTER, lambda n: counter_requests(fx, n)),
            ("phone", PHONE, lambda n: phone_requests(fx, n)),
        ):
            print(f"  {channel} ingest, {backend}, {workers} worker(s)", flush=True)
            sub = workdir / f"{channel}-{backend}-w{workers}"
            results = _load(server, path, make, duration, runs, sub, check)
            bad = [r for r in results if not r.ok]
            name = f"ingest.{channel}.{backend}.w{workers}"
            figures.append(
                Figure(
                    name=name,
                    title=f"Ingest, {channel} endpoint, {backend}, {workers} worker(s)",
                    unit="req/s",
                    runs=[0.0 if not r.ok else r.rps for r in results],
                    target=TARGET,
                    ceiling=ceiling_median,
                    ceiling_name=f"ceiling.post.w{workers}",
                    judged="ratio",
                    detail={
                        "p99_ms": [r.p99_ms for r in results],
                        "p50_ms": [r.p50_ms for r in results],
                        "requests": [r.requests for r in results],
                        "failed_runs": [r.brief() for r in bad],
                    },
                )
            )
            figures.append(
                Figure(
                    name=f"{name}.p99",
                    title=f"Ingest p99, {channel}, {backend}, {workers} worker(s)",
                    unit="ms",
                    runs=[r.p99_ms for r in results],
                    better="lower",
                )
            )
            rss += [r.rss_mb or 0.0 for r in results]
        hwm = http.hwm_mb(server.pids())
    figures.append(
        Figure(
            name=f"rss.ingest.{backend}.w{workers}",
            title=f"Peak RSS of the server under ingest, {backend}, {workers} worker(s)",
            unit="MB",
            runs=rss,
            better="lower",
            target=RSS_TARGET_MB,
            detail={"vm_hwm_mb_sum": round(hwm, 1), "stored_ratings": fx.ratings()},
        )
    )
    return figures


def postgres_available(url: str) -> bool:
    try:
        engine = make_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def clean(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
