"""Hostile input: the web client and browser fixtures of tests/web and tests/e2e, and a
snapshot of every table's row count (a refused request must leave all of them as they were).

These tests store on purpose what the fuzzer finds valid (policies in force, devices,
payload texts in names), so they get a database of their own: the session fixtures
`settings`, `engine`, `owner_engine`, `users` and `app_settings` are overridden here for
this directory, on a fresh SQLite file or PostgreSQL database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, literal, select, union_all
from sqlmodel import SQLModel

import portal.models  # noqa: F401 - registers every table on SQLModel.metadata
from portal import accounts, ledger
from portal.config import Settings
from portal.db import make_engine
from tests.conftest import PASSWORD, _postgres_database, test_settings
from tests.e2e.conftest import browser, page, server  # noqa: F401 - fixtures, re-exported
from tests.factories import World, make_world
from tests.web.conftest import client  # noqa: F401 - fixture, re-exported


@pytest.fixture(scope="package")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    url = os.environ.get("TEST_DATABASE_URL", "")
    keys = tmp_path_factory.mktemp("hostile-keys")
    if url.startswith("postgresql"):
        gen = _postgres_database(url, suffix="_hostile")
        yield test_settings(next(gen), keys)
        gen.close()
    else:
        yield test_settings(f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'h.db'}", keys)


@pytest.fixture(scope="package")
def app_settings(settings: Settings) -> Settings:
    ledger.load_key(settings.ledger_key_path, settings.ledger_origin, create=True)
    return settings


@pytest.fixture(scope="package")
def engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings.runtime_database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="package")
def owner_engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="package")
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


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows of every table of the schema, read in one statement."""
    tables = sorted(SQLModel.metadata.tables.values(), key=lambda t: t.name)
    query = union_all(
        *(
            select(literal(t.name).label("t"), func.count().label("n")).select_from(t)
            for t in tables
        )
    )
    with engine.connect() as conn:
        return {name: n for name, n in conn.execute(query)}


def changed(before: dict[str, int], after: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {t: (before[t], after[t]) for t in before if before[t] != after.get(t)}


# Figures the tests of this directory report (schemathesis cases per operation, 413
# checks, payloads x pages, CSV cases), printed at the end of the run.
REPORT: dict[str, list[str]] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for title, lines in REPORT.items():
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)
