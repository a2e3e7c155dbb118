"""Browser tests: the real app under uvicorn, driven by Playwright in Debian's Chromium.

Screenshots land in tests/e2e/screenshots/ so a person can look at what was tested.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
from sqlalchemy import Engine

from portal import ledger
from portal.config import Settings

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).parent / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortalServer:
    """The real app under uvicorn in a child process; it can be stopped and started
    again on the same port and database (e.g. to take the network away mid-test)."""

    def __init__(
        self, settings: Settings, env: dict[str, str] | None = None, log: IO[bytes] | None = None
    ) -> None:
        self.settings = settings
        self.env = env or {}  # extra environment (e.g. CHECKPOINT_INTERVAL) over the defaults
        self.log = log  # where the server's output goes (default: this process's)
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> str:
        """Start on `port` (default: the previous port, or a free one); wait until it answers."""
        if self.proc is not None:
            raise RuntimeError("the portal is already running")
        ledger.load_key(self.settings.ledger_key_path, self.settings.ledger_origin, create=True)
        self.port = port or self.port or _free_port()
        command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(
            command, env=self.environment(), stdout=self.log, stderr=self.log
        )
        return self.wait_until_up()

    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.settings.database_url,
            "LEDGER_KEY_PATH": str(self.settings.ledger_key_path),
            "PHONE_KEY_PATH": str(self.settings.phone_key_path),
            "CHECKPOINT_INTERVAL": "0",
            "ENVIRONMENT": "test",
        }
        env.pop("MEILI_URL", None)
        return env | self.env

    def wait_until_up(self, seconds: float = 30) -> str:
        assert self.proc is not None
        deadline = time.monotonic() + seconds
        while True:  # wait until it answers, with a deadline
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the portal did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="module")  # stopped after its module: its outbox worker shares the db
def server(settings: Settings, engine: Engine) -> Iterator[str]:
    portal = PortalServer(settings)
    yield portal.start()
    portal.stop()


@pytest.fixture
def portal_server(settings: Settings, engine: Engine) -> Iterator[PortalServer]:
    """A server the test starts and stops itself; always stopped afterwards."""
    portal = PortalServer(settings)
    yield portal
    portal.stop()


# Per module: a live sync Playwright keeps its event loop marked running in the main
# thread, so tests elsewhere that run their own loop (anyio.run) must not overlap it.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: run `make browser`")
        pytest.skip("chromium is not installed (`make browser` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):  # noqa: ANN001, ANN201
    SHOTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.console_errors = errors
    yield pg
    context.close()
