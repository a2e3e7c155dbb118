"""Shared fixtures: a migrated database (SQLite file or a fresh PostgreSQL database).

TEST_DATABASE_URL picks the server: unset -> a SQLite file per test session;
postgresql+psycopg://... -> a database `gongping_test_<pid>` created on that server and
dropped afterwards. The app connects as the restricted role, as in production.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from portal import accounts
from portal.config import Settings, load_settings
from portal.db import make_engine, migrate
from tests.factories import World, make_world

PASSWORD = "correct horse battery"
CI = os.environ.get("CI") == "true"
ON_POSTGRES = os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests about one database's own features run only on that database (deselected,
    not skipped: nothing is missing, the feature does not exist on the other one)."""
    other = "sqlite_only" if ON_POSTGRES else "postgres_only"
    keep = [i for i in items if other not in i.keywords]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if other in i.keywords])
        items[:] = keep


def _postgres_database(url: str, suffix: str = "") -> Iterator[str]:
    name = f"gongping_test_{os.getpid()}{suffix}"
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if url.startswith("postgresql"):
        yield from _postgres_database(url)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'portal.db'}"


def test_settings(database_url: str, key_dir: Path) -> Settings:
    base = load_settings(env_file="/nonexistent")
    s = dataclasses.replace(
        base,
        database_url=database_url,
        environment="test",
        ledger_key_path=key_dir / "ledger.pem",
        phone_key_path=key_dir / "phone.key",
        meili_url=None,
        checkpoint_interval=0,
    )
    migrate(s)
    return s


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return test_settings(database_url, tmp_path_factory.mktemp("key"))


@pytest.fixture
def scratch_settings(tmp_path: Path) -> Iterator[Settings]:
    """A database of its own, for tests that damage it on purpose (tampering)."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if url.startswith("postgresql"):
        gen = _postgres_database(url, suffix=f"_{tmp_path.name[-12:].replace('-', '_')}")
        yield test_settings(next(gen), tmp_path)
        gen.close()
    else:
        yield test_settings(f"sqlite:///{tmp_path / 'scratch.db'}", tmp_path)


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    """The app's connection (restricted role on PostgreSQL)."""
    eng = make_engine(settings.runtime_database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def owner_engine(settings: Settings) -> Iterator[Engine]:
    """The schema owner's connection: what an attacker with database access would use."""
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def is_postgres(settings: Settings) -> bool:
    return settings.is_postgres


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def users(owner_engine: Engine, engine: Engine) -> World:
    world = make_world(engine)
    with owner_engine.begin() as conn:
        for name, role, insurer in [
            ("reg", "regulator", None),
            ("adm", "admin", None),
            ("ins-a", "insurer", world.insurer_a),
            ("ins-b", "insurer", world.insurer_b),
        ]:
            accounts.add_user(conn, name, PASSWORD, role, insurer)
    return world
