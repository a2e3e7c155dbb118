"""Profile one ingest configuration with py-spy while wrk loads it.

    .venv/bin/python -m bench.profile_ingest [--backend sqlite|postgres] [--channel counter|phone]
        [--workers 1] [--seconds 10] [--idle] [--out bench/.work/profile]

Writes OUT.txt (py-spy's collapsed stacks) and OUT.svg (flame graph), and prints the
functions with the most samples (self and total): what the notes in
docs/performance.md were read from.

`--cpu` instead divides the CPU time the server's processes used (as
bench/profile_pages.py does) by the ratings wrk got answered: the cost of a rating,
which barely depends on what else the shared machine runs, unlike req/s.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import threading
import time
from pathlib import Path

from bench import http, ingest
from bench.profile_pages import cpu_seconds

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def summarise(collapsed: Path, top: int = 25, only: str = "") -> str:
    total: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if only and only not in stack:
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        for f in set(frames):
            total[f] += n
        own[frames[-1]] += n
    out = [f"{samples} samples", "-- total --"]
    out += [f"{100 * n / samples:5.1f}% {f}" for f, n in total.most_common(top)]
    out += ["-- self --"]
    out += [f"{100 * n / samples:5.1f}% {f}" for f, n in own.most_common(top)]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="sqlite")
    p.add_argument("--channel", default="counter")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--idle", action="store_true")
    p.add_argument("--dump", action="store_true", help="py-spy dump 3 times instead")
    p.add_argument("--cpu", action="store_true", help="CPU ms per rating instead of py-spy")
    p.add_argument("--only", default="", help="summarise only stacks with this frame")
    p.add_argument("--out", default="bench/.work/profile")
    a = p.parse_args()
    work = Path("bench/.work/profile-run")
    fx = ingest.fixture(a.backend, f"bench_prof_{a.backend}", work, PG)
    make = ingest.counter_requests if a.channel == "counter" else ingest.phone_requests
    path = ingest.COUNTER if a.channel == "counter" else ingest.PHONE
    server = http.Server("app:app", a.workers, env=fx.env, ready_path="/api/v1/openapi.json")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with http.serving(server, work):
            prefix = work / "requests"
            http.write_request_file(prefix, make(fx, 60_000))
            result: list[http.WrkResult] = []
            t = threading.Thread(
                target=lambda: result.append(
                    http.wrk(server.url + path, a.seconds + 2, work, files=prefix)
                )
            )
            t.start()
            pid = server.pids()[-1] if a.workers > 1 else server.pid
            if a.cpu:
                before = cpu_seconds(server.pids())
                t.join()
                used = cpu_seconds(server.pids()) - before
                print(result[0].brief())
                print(f"{used * 1000 / max(1, result[0].requests):.2f} ms CPU per rating")
                return
            if a.dump:
                for i in range(3):
                    time.sleep(a.seconds / 4)
                    dump = subprocess.run(
                        ["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True
                    )
                    Path(f"{out}.dump{i}.txt").write_text(dump.stdout + dump.stderr)
                t.join()
                print(result[0].brief())
                return
            cmd = ["py-spy", "record", "--pid", str(pid), "-d", str(a.seconds), "-r", "200"]
            cmd += ["--format", "raw", "-o", f"{out}.txt"] + (["--idle"] if a.idle else [])
            subprocess.run(cmd, check=True, capture_output=True)
            t.join()
            subprocess.run(
                ["py-spy", "record", "--pid", str(pid), "-d", "1", "-o", f"{out}.svg"],
                capture_output=True,
            )
            print(result[0].brief())
            print(summarise(Path(f"{out}.txt"), only=a.only))
    finally:
        fx.engine.dispose()
        if fx.drop:
            fx.drop()


if __name__ == "__main__":
    main()
