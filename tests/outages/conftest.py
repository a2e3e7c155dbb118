"""Outage fixtures: a Meilisearch the test may stop and start again (same data, same
port), a PostgreSQL cluster of its own, and the channel credentials the clients use.

Each outage test has a database of its own (`scratch_settings` or the private
cluster), so "the outbox drains to zero" and "the index holds exactly the published
reviews" speak about everything in it, not about other tests' leftovers.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from portal import credentials
from portal.config import Settings
from portal.search.server import MeiliServer, free_port, start
from portal.secrets_files import ensure_key_file
from tests.conftest import CI, test_settings
from tests.factories import make_phone_staff, make_world
from tests.outages.pg_cluster import PgCluster
from tests.search.conftest import require_binary


class Meili:
    """A real Meilisearch; stop() and start() keep its data directory, port and key."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.key = secrets.token_urlsafe(24)
        self.server: MeiliServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"MEILI_URL": self.url, "MEILI_KEY": self.key}

    def start(self) -> None:
        self.server = start(self.directory, self.port, self.key)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def ids(self) -> set[str]:
        """Every document id in the reviews index, read over the HTTP API."""
        out: set[str] = set()
        headers = {"authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=10) as http:
            while True:
                page = http.get(
                    "/indexes/reviews/documents",
                    params={"fields": "id", "limit": 1000, "offset": len(out)},
                )
                page.raise_for_status()
                data = page.json()
                out.update(str(d["id"]) for d in data["results"])
                if not data["results"] or len(out) >= data["total"]:
                    return out


@pytest.fixture
def meili(tmp_path: Path) -> Iterator[Meili]:
    require_binary()
    m = Meili(tmp_path / "meili")
    m.start()
    yield m
    m.stop()


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    try:
        cluster = PgCluster()
    except FileNotFoundError as exc:
        if CI:
            pytest.fail(f"PostgreSQL server binaries missing in CI: {exc}")
        pytest.skip(str(exc))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def cluster_settings(pg_cluster: PgCluster, tmp_path: Path) -> Settings:
    """Settings on the private cluster, migrated like every test database (app role too)."""
    return test_settings(pg_cluster.create_database(), tmp_path)


@dataclass(frozen=True)
class Channels:
    """What the load clients need: a counter device and a call centre's API client."""

    insurer: str
    device_id: int
    device_token: str
    teller: str
    client_id: str
    client_secret: str
    call_agent: str


def make_channels(engine: Engine, settings: Settings) -> Channels:
    world = make_world(engine)
    staff = make_phone_staff(engine, ensure_key_file(settings.phone_key_path))
    with engine.begin() as conn:
        device_id, token = credentials.add_device(conn, world.insurer_a, world.branch_a)
        client_id, secret = credentials.add_client(conn, world.insurer_a)
    return Channels(
        world.insurer_a, device_id, token, world.teller_a, client_id, secret, staff.call_agent
    )


def server_env(**extra: str) -> dict[str, str]:
    """Background jobs at a test's pace: checkpoints every second."""
    return {"CHECKPOINT_INTERVAL": "1", **extra}
