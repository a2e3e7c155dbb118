"""CPU cost of the insurer page and its reviews fragment, per request, measured on the server.

    .venv/bin/python -m bench.profile_pages [--ratings 5000] [--seconds 5] [--cold] [--bare]
    .venv/bin/python -m bench.profile_pages --ratings 1000000 --cold --record bench/.work/prof

Starts the portal as bench/pages.py does (uvicorn, 2 workers, the page database of that
size, made there if missing), loads `/insurers/{busiest}` with wrk (page, then fragment)
and divides the CPU time the server's processes used (utime + stime from /proc) by the
requests wrk counted (64 connections as in bench/pages.py, or `--connections 1`: the
cost of one request alone, without threads contending for the GIL). Unlike wrk's req/s
and latency, that figure barely depends on what else the shared 2-core machine does.
`--cold` starts the portal with PAGE_CACHE_MB=0: every request runs the queries and
renders (the miss path of portal/page_cache.py).
`--bare` measures the ceiling (bench/bare_app.py) the same way. `--record OUT` samples the
workers with py-spy meanwhile (OUT-page.txt, OUT-fragment.txt: collapsed stacks) and
prints the functions with the most samples (bench.profile_ingest.summarise).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench import http, pages

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def measure(server: http.Server, path: str, headers: dict[str, str], seconds: float,
            workdir: Path, record: Path | None) -> tuple[float, http.WrkResult]:  # fmt: skip
    http.wrk(server.url + path, 1, workdir, headers=headers)  # warm-up: caches, templates
    pids = server.pids()
    spy = None
    if record:
        cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--subprocesses"]
        cmd += ["--pid", str(server.pid), "--format", "raw", "-r", "200", "-o", f"{record}.txt"]
        cmd += ["--duration", str(max(1, round(seconds)))]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = cpu_seconds(pids)
    result = http.wrk(server.url + path, seconds, workdir, headers=headers)
    used = cpu_seconds(pids) - before
    if spy:
        spy.wait(timeout=60)
    return used * 1000 / max(1, result.requests), result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratings", type=int, default=5_000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--cold", action="store_true", help="no page cache: every request a miss")
    p.add_argument("--bare", action="store_true", help="the bare template ceiling instead")
    p.add_argument("--connections", type=int, default=http.CONNECTIONS,
                   help="wrk's connections (1: the cost of a request alone)")  # fmt: skip
    p.add_argument("--record", type=Path, help="py-spy the workers into OUT-{kind}.txt")
    p.add_argument("--top", type=int, default=30, help="functions listed with --record")
    a = p.parse_args(argv)
    http.CONNECTIONS, http.THREADS = a.connections, min(http.THREADS, a.connections)
    workdir = HERE / ".work" / "pages"
    url, env, _ = pages.database(workdir, a.ratings)
    code, _ = pages.busiest_insurer(url)
    path = f"/insurers/{code}"
    if a.bare:
        context = workdir / "page-context.pickle"
        pages.capture_context(url, code, context)
        ceiling = {"BENCH_PAGE_CONTEXT": str(context)}
        server = http.Server("bench.bare_app:app", pages.WORKERS, env=ceiling, ready_path="/ping")
    else:
        env = {**env, "PAGE_CACHE_MB": "0"} if a.cold else env
        server = http.Server("app:app", pages.WORKERS, env=env, ready_path=path)
    label = "bare" if a.bare else ("portal, no cache" if a.cold else "portal")
    label += f", {a.connections} connections"
    with http.serving(server, workdir):
        for kind, headers in (("page", {}), ("fragment", {"HX-Request": "true"})):
            out = Path(f"{a.record}-{kind}") if a.record else None
            cpu_ms, r = measure(server, path, headers, a.seconds, workdir, out)
            print(f"{kind} ({label}, {a.ratings:,} ratings): {cpu_ms:.2f} ms CPU per request; "
                  f"wrk {r.brief()}", flush=True)  # fmt: skip
            if out:
                from bench.profile_ingest import summarise

                print(summarise(Path(f"{out}.txt"), a.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
