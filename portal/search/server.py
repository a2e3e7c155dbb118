"""Start and stop a local Meilisearch for development (`make run`) and the tests.

    python -m portal.search.server start --dir var/meili --port 7700 --pidfile var/meili/meili.pid
    python -m portal.search.server stop --pidfile var/meili/meili.pid

The binary comes from npm (package.json), which installs it without the execute bit.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from portal.config import ROOT

NPM_BINARY = ROOT / "node_modules" / "@gaubee" / "meilisearch-linux-amd64" / "meilisearch"
LOCAL_BINARY = ROOT / "var" / "bin" / "meilisearch"


def binary() -> Path:
    """An executable Meilisearch; FileNotFoundError when npm has not installed it."""
    if os.access(NPM_BINARY, os.X_OK):
        return NPM_BINARY
    if not NPM_BINARY.is_file():
        raise FileNotFoundError(f"no Meilisearch binary at {NPM_BINARY}: run `npm ci`")
    src = NPM_BINARY.stat()
    have = LOCAL_BINARY.stat() if LOCAL_BINARY.is_file() else None
    if have is None or (have.st_size, int(have.st_mtime)) != (src.st_size, int(src.st_mtime)):
        # Copy, not chmod: node_modules may be read-only or shared. copy2 keeps the
        # mtime, which tells an upgraded npm package from the copy we already have.
        LOCAL_BINARY.parent.mkdir(parents=True, exist_ok=True)
        tmp = LOCAL_BINARY.with_suffix(f".{os.getpid()}.tmp")
        shutil.copy2(NPM_BINARY, tmp)
        tmp.chmod(0o755)
        tmp.replace(LOCAL_BINARY)  # atomic: a concurrent starter never runs a half copy
    return LOCAL_BINARY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"  # a zombie has exited; its parent (maybe not us) has yet to reap it


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL. Meilisearch flushes on SIGTERM."""
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@dataclass
class MeiliServer:
    url: str
    key: str
    pid: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:  # started by another process: only the PID is known
            stop_pid(self.pid, timeout)
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    # No keep-alive: each poll is a fresh connection, like the search client's.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=1.0, limits=limits) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"Meilisearch exited ({proc.returncode}):\n{log.read_text()}")
            try:
                if http.get(f"{url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"Meilisearch did not answer /health within {timeout} s")


def start(
    directory: Path, port: int | None = None, key: str | None = None, timeout: float = 30.0
) -> MeiliServer:
    """Run Meilisearch on 127.0.0.1, data under `directory`; return once it is healthy."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    key = key or secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{port}"
    args = [
        str(binary()), "--http-addr", f"127.0.0.1:{port}", "--db-path", str(directory / "data.ms"),
        "--dump-dir", str(directory / "dumps"), "--no-analytics", "--env", "development",
        # By default indexing may take 2/3 of RAM: measured 1.8 GB RSS for 400 small
        # documents, against 0.23 GB with this cap. Several test sessions run at once.
        "--max-indexing-memory", "256 MiB",
    ]  # fmt: skip
    log = directory / "meilisearch.log"
    env = os.environ | {"MEILI_MASTER_KEY": key}  # not argv: other users can read argv
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=directory, start_new_session=True,  # survives the CLI that started it
        )  # fmt: skip
    _wait_healthy(url, proc, log, timeout)
    return MeiliServer(url=url, key=key, pid=proc.pid, process=proc)


def _is_meilisearch(pid: int) -> bool:
    """Guards `stop` against a stale pidfile whose PID now belongs to something else."""
    try:
        return b"meilisearch" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def dev_key(directory: Path) -> str:
    """The development master key, kept beside the data so restarts reuse it."""
    path = directory / "master-key"
    if not path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portal.search.server")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=ROOT / "var" / "meili")
    parser.add_argument("--port", type=int, default=7700)
    parser.add_argument("--pidfile", type=Path, default=None)
    parser.add_argument("--key", default=os.environ.get("MEILI_KEY") or None)
    a = parser.parse_args(argv)
    pidfile: Path = a.pidfile or a.dir / "meili.pid"
    if a.action == "stop":
        if pidfile.is_file():
            pid = int(pidfile.read_text().strip())
            if _is_meilisearch(pid):
                stop_pid(pid)
            pidfile.unlink()
        return 0
    key = a.key or dev_key(a.dir)
    running = pidfile.is_file() and _is_meilisearch(int(pidfile.read_text().strip()))
    if not running:  # `make run` twice: keep the server that is already up
        server = start(a.dir, a.port, key)
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{server.pid}\n")
    print(f"MEILI_URL=http://127.0.0.1:{a.port}\nMEILI_KEY={key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
