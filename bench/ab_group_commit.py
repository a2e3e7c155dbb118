"""A/B of the write path's switches on the ingest path: the same database and load, the
server started alternately with GROUP_COMMIT=0/1 (each rating its own transaction in
the threadpool, or portal/writer.py) and SQLITE_WRITE_LOCK=0/1 (SQLite's busy handler,
or the in-process lock and the cross-process flock of portal/db.py). A variant may
instead name any settings of the server's environment, as KEY=VALUE pairs.

    .venv/bin/python -m bench.ab_group_commit [--backend sqlite] [--workers 1]
        [--channel counter] [--seconds 8] [--rounds 2] [--variant busy=1,0 ...]
    .venv/bin/python -m bench.ab_group_commit --backend postgres \
        --variant group=GROUP_COMMIT=1 --variant own=GROUP_COMMIT=0
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench import http, ingest

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="sqlite")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--channel", default="counter")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--variant",
        action="append",
        metavar="NAME=GROUP,LOCK|NAME=KEY=VALUE,...",
        help="e.g. busy=1,0 (GROUP_COMMIT and SQLITE_WRITE_LOCK) or own=GROUP_COMMIT=0;"
        " default: the four mixes",
    )
    a = p.parse_args()
    work = Path("bench/.work/ab")
    fx = ingest.fixture(a.backend, f"bench_ab_{a.backend}", work, PG)
    make = ingest.counter_requests if a.channel == "counter" else ingest.phone_requests
    path = ingest.COUNTER if a.channel == "counter" else ingest.PHONE
    mixes = {"old": ("0", "0"), "lock": ("0", "1"), "group": ("1", "0"), "lock+group": ("1", "1")}
    variants = {n: {"GROUP_COMMIT": g, "SQLITE_WRITE_LOCK": lk} for n, (g, lk) in mixes.items()}
    if a.variant:
        variants = dict(_variant(v) for v in a.variant)
    out: dict[str, list[http.WrkResult]] = {v: [] for v in variants}
    try:
        for _ in range(a.rounds):
            for flag, settings in variants.items():
                env = {**fx.env, **settings}
                ready = "/api/v1/openapi.json"
                server = http.Server("app:app", a.workers, env=env, ready_path=ready)
                with http.serving(server, work):
                    prefix = work / "requests"
                    http.write_request_file(prefix, make(fx, 3000))
                    http.wrk(server.url + path, 1, work, files=prefix)
                    http.write_request_file(prefix, make(fx, int(a.seconds * 1500) + 4000))
                    r = http.wrk(server.url + path, a.seconds, work, files=prefix)
                print(f"{flag}: {r.brief()}", flush=True)
                out[flag].append(r)
        for flag, rs in out.items():
            ok = [r for r in rs if r.ok]
            print(
                f"{flag}: median {statistics.median(r.rps for r in rs):.0f} req/s, "
                f"p99 {statistics.median(r.p99_ms for r in rs):.0f} ms, {len(ok)}/{len(rs)} ok"
            )
    finally:
        fx.engine.dispose()
        if fx.drop:
            fx.drop()


def _variant(arg: str) -> tuple[str, dict[str, str]]:
    """`name=1,0` (GROUP_COMMIT, SQLITE_WRITE_LOCK) or `name=KEY=VALUE,KEY=VALUE`."""
    name, _, spec = arg.partition("=")
    if "=" in spec:
        return name, dict(pair.split("=", 1) for pair in spec.split(","))
    group, lock = spec.split(",")
    return name, {"GROUP_COMMIT": group, "SQLITE_WRITE_LOCK": lock}


if __name__ == "__main__":
    main()
