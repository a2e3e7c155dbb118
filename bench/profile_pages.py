"""CPU cost of the insurer page and its reviews fragment, in process (no wrk, no uvicorn).

    .venv/bin/python -m bench.profile_pages --ratings 5000 [--requests 200]
    .venv/bin/python -m bench.profile_pages --ratings 1000000 --cold   # every request a miss
    .venv/bin/python -m bench.profile_pages --only page --record bench/.work/pages-profile

Uses the page database of bench/pages.py (made there if missing) and the busiest
insurer. Reports the process CPU time per request (all threads: the handler's database
work runs in the threadpool), which, unlike wrk's figures, does not depend much on what
else the shared machine is doing; with `--record OUT`, py-spy samples every thread of
the run (OUT.txt, collapsed stacks) and the functions with the most samples are printed
(bench.profile_ingest.summarise). `--cold` asks a different page of reviews each time, so
that no request is served from the page cache (portal/page_cache.py): it measures the
queries and the rendering.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import pages

HERE = Path(__file__).resolve().parent


def _client(env: dict[str, str]):  # type: ignore[no-untyped-def]
    os.environ.update(env)
    from starlette.testclient import TestClient

    from portal.web.app import create_app

    return TestClient(create_app(), base_url="https://testserver")


def _paths(code: str, n: int, cold: bool) -> list[str]:
    base = f"/insurers/{code}"
    if not cold:
        return [base] * n
    sorts = ("", "&sort=oldest", "&sort=lowest", "&sort=highest")
    return [f"{base}?page={1 + i % 400}{sorts[i // 400 % 4]}" for i in range(n)]


def measure(client, paths: list[str], headers: dict[str, str]) -> float:  # type: ignore[no-untyped-def]
    for path in paths[:3]:  # warm-up: imports, template compilation, connections
        client.get(path, headers=headers)
    start = time.process_time()
    for path in paths:
        r = client.get(path, headers=headers)
        assert r.status_code == 200, (path, r.status_code)
    return (time.process_time() - start) * 1000 / len(paths)


def record(out: Path, argv: list[str], top: int) -> int:
    """Run this module again under py-spy (every thread, 250 samples/s), then summarise."""
    from bench.profile_ingest import summarise

    out.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    cmd = [str(spy), "record", "--format", "raw", "-r", "250", "-o", f"{out}.txt", "--"]
    subprocess.run([*cmd, sys.executable, "-m", "bench.profile_pages", *argv], check=True)
    print(summarise(Path(f"{out}.txt"), top))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratings", type=int, default=5_000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--cold", action="store_true", help="a different page of reviews each time")
    p.add_argument("--only", choices=("page", "fragment"), help="measure only this kind")
    p.add_argument("--record", type=Path, help="profile with py-spy into OUT.txt")
    p.add_argument("--top", type=int, default=30, help="functions to list with --record")
    a = p.parse_args(argv)
    if a.record:
        rest = [x for x in (argv or sys.argv[1:]) if x not in ("--record", str(a.record))]
        return record(a.record, rest, a.top)
    workdir = HERE / ".work" / "pages"
    url, env, _ = pages.database(workdir, a.ratings)
    code, _ = pages.busiest_insurer(url)
    with _client(env) as client:
        for kind, headers in (("page", {}), ("fragment", {"HX-Request": "true"})):
            if a.only and kind != a.only:
                continue
            paths = _paths(code, a.requests, a.cold)
            cpu = measure(client, paths, headers)
            print(f"{kind}: {cpu:.2f} ms CPU per request ({len(paths)} requests, {code})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
