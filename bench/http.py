"""HTTP load plumbing shared by the HTTP figures: uvicorn servers, wrk runs, RSS samples.

Every HTTP figure is measured with wrk on loopback (`wrk -t2 -c64 -dNs --latency`) and
a Lua script whose `done()` prints one `BENCH {json}` line: requests, req/s, latency
percentiles (p50/p95/p99 from wrk's own histogram) and error counts. Requests come
either from a fixed request (GET pages) or from pre-generated files of distinct raw
HTTP requests, one file per wrk thread (ingest: unique idempotency keys, fresh HMAC
signatures), which the Lua script walks through; running past the end of a file is
reported (`exhausted`) and fails the figure, so no key is ever sent twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
THREADS = 2
CONNECTIONS = 64

# Lua: one request file per thread, length-prefixed raw requests ("<len>\n<bytes>").
FILES_LUA = r"""
local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end
function init(args)
  local path = args[1] .. "." .. tid
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  reqs = {}
  local pos = 1
  while pos <= #data do
    local nl = string.find(data, "\n", pos, true)
    local len = tonumber(string.sub(data, pos, nl - 1))
    table.insert(reqs, string.sub(data, nl + 1, nl + len))
    pos = nl + 1 + len
  end
  n = #reqs
  i = 0
  issued = 0
end
function request()
  i = i + 1
  issued = issued + 1
  if i > n then i = 1 end
  return reqs[i]
end
"""

DONE_LUA = r"""
function done(summary, latency, requests)
  local issued, capacity = 0, 0
  for _, t in ipairs(threads or {}) do
    issued = issued + (t:get("issued") or 0)
    capacity = capacity + (t:get("n") or 0)
  end
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"issued": %d, "capacity": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, summary.errors.status, summary.errors.timeout,
    summary.errors.connect, summary.errors.read, summary.errors.write, issued, capacity))
end
"""

FIXED_LUA = r"""
threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  issued = 0
  n = 0
end
"""


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int  # wrk's "Non-2xx or 3xx responses" (status >= 400)
    socket_errors: int
    exhausted: bool  # a request file ran out: some requests were sent twice
    capacity: int
    rss_mb: float | None = None  # peak summed RSS of the server processes
    raw: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.requests > 0
            and self.non_2xx == 0
            and self.socket_errors == 0
            and not self.exhausted
        )

    def brief(self) -> str:
        rss = f", RSS {self.rss_mb:.0f} MB" if self.rss_mb else ""
        bad = "" if self.ok else f", NOT OK ({self.non_2xx} non-2xx, {self.socket_errors} "
        bad += f"socket errors{', file exhausted' if self.exhausted else ''})" if bad else ""
        return (
            f"{self.rps:,.0f} req/s, p50 {self.p50_ms:.1f} / p95 {self.p95_ms:.1f} / "
            f"p99 {self.p99_ms:.1f} ms{rss}{bad}"
        )


def wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)  # exits 1
    return (out.stdout + out.stderr).strip().splitlines()[0] if out.stdout + out.stderr else "?"


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk(
    url: str,
    duration: float,
    workdir: Path,
    *,
    files: Path | None = None,
    headers: dict[str, str] | None = None,
    rss_pids: Sequence[int] = (),
) -> WrkResult:
    """One wrk run; `files` is the prefix of per-thread request files (FILE.1, FILE.2)."""
    workdir.mkdir(parents=True, exist_ok=True)
    lua = (FILES_LUA if files else FIXED_LUA) + DONE_LUA
    script = workdir / ("wrk-files.lua" if files else "wrk-fixed.lua")
    script.write_text(lua)
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s"]
    cmd += ["--latency", "--timeout", "10s", "-s", str(script)]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    if files:
        cmd += ["--", str(files)]
    sampler = RssSampler(rss_pids) if rss_pids else None
    if sampler:
        sampler.start()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    finally:
        peak = sampler.stop() if sampler else None
    return parse_wrk(proc.stdout + proc.stderr, peak)


def parse_wrk(out: str, rss_mb: float | None = None) -> WrkResult:
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    s = json.loads(line[6:])
    rps_match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    rps = float(rps_match.group(1)) if rps_match else s["requests"] / (s["duration_us"] / 1e6)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = s["connect_errors"] + s["read_errors"] + s["write_errors"] + s["timeouts"]
    return WrkResult(
        rps=rps,
        requests=s["requests"],
        p50_ms=s["p50_us"] / 1000,
        p95_ms=s["p95_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        max_ms=s["max_us"] / 1000,
        non_2xx=int(non2xx.group(1)) if non2xx else s["status_errors"],
        socket_errors=socket_errors,
        exhausted=s["capacity"] > 0 and s["issued"] > s["capacity"],
        capacity=s["capacity"],
        rss_mb=rss_mb,
        raw=out,
    )


def write_request_file(prefix: Path, requests: Sequence[bytes], threads: int = THREADS) -> None:
    """Split raw requests round-robin into one length-prefixed file per wrk thread."""
    for t in range(threads):
        with open(f"{prefix}.{t + 1}", "wb") as f:
            for raw in requests[t::threads]:
                f.write(b"%d\n" % len(raw))
                f.write(raw)


def raw_request(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


# -- servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pids: Sequence[int]) -> float:
    return sum(_status_kb(p, "VmRSS") for p in pids) / 1024


def hwm_mb(pids: Sequence[int]) -> float:
    return sum(_status_kb(p, "VmHWM") for p in pids) / 1024


class RssSampler:
    """Samples the summed VmRSS of a process tree every 100 ms; stop() gives the peak."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.roots = list(pids)
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = [p for r in self.roots for p in descendants(r)]
            self.peak = max(self.peak, rss_mb(pids))
            self._stop.wait(0.1)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


@dataclass
class Server:
    app: str  # "app:app" or "bench.bare_app:app"
    workers: int
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, logdir: Path) -> Server:
        self.port = self.port or free_port()
        logdir.mkdir(parents=True, exist_ok=True)
        self.log = logdir / f"server-{self.port}.log"
        cmd = [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--workers", str(self.workers)]
        cmd += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
        cmd += ["--log-level", "warning"]
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()[-3000:]}")
            # Every worker must be up: ask a few times in a row.
            if all(self._ready() for _ in range(self.workers * 4)):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=5) as r:
                return bool(r.status < 500)
        except Exception:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return descendants(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group only
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextlib.contextmanager
def serving(server: Server, logdir: Path) -> Iterator[Server]:
    server.start(logdir)
    try:
        yield server
    finally:
        server.stop()
