"""Which database errors mean "out for a while" (503, retry) and which are bugs (500),
and what a visitor and an API client see when no database answers at all."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from starlette.testclient import TestClient

from portal import ledger
from portal.config import Settings
from portal.db import unavailable
from portal.web.app import create_app
from tests.outages.load import TRACE_MARKERS


def wrapped(cls: type[sa_exc.DBAPIError], orig: Exception) -> sa_exc.DBAPIError:
    return cls("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (wrapped(sa_exc.OperationalError, psycopg.OperationalError("connection refused")), True),
        (wrapped(sa_exc.OperationalError, psycopg.errors.AdminShutdown("terminating")), True),
        (wrapped(sa_exc.OperationalError, psycopg.errors.CannotConnectNow("starting up")), True),
        (wrapped(sa_exc.OperationalError, psycopg.errors.TooManyConnections("too many")), True),
        (wrapped(sa_exc.OperationalError, psycopg.errors.DeadlockDetected("deadlock")), True),
        (wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")), True),
        (sa_exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"), True),
        (sa_exc.DisconnectionError("gone"), True),
        # Bugs, not outages: they stay 500s.
        (wrapped(sa_exc.ProgrammingError, psycopg.errors.UndefinedTable("no such table")), False),
        (wrapped(sa_exc.IntegrityError, psycopg.errors.UniqueViolation("duplicate")), False),
        (wrapped(sa_exc.OperationalError, sqlite3.OperationalError("no such table: x")), False),
        (wrapped(sa_exc.OperationalError, psycopg.errors.DiskFull("disk full")), True),
        (ValueError("not a database error"), False),
    ],
)
def test_what_counts_as_the_database_being_out(error: Exception, expected: bool) -> None:
    assert unavailable(error) is expected


@pytest.fixture
def no_database(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    """The app pointed at a PostgreSQL that is not there (nothing listens on port 1)."""
    gone = dataclasses.replace(
        settings,
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nothing",
        app_database_url=None,
        phone_key_path=tmp_path / "phone.key",
    )
    ledger.load_key(gone.ledger_key_path, gone.ledger_origin, create=True)
    with TestClient(create_app(gone), base_url="https://testserver") as client:
        yield client


def test_without_a_database_pages_and_api_answer_503_with_retry_after(
    no_database: TestClient,
) -> None:
    page = no_database.get("/", headers={"accept-language": "zh-CN"})
    assert page.status_code == 503 and page.headers["retry-after"].isdigit()
    assert "text/html" in page.headers["content-type"]
    assert "服务暂时不可用，请几秒钟后重试。" in page.text
    api = no_database.get("/api/v1/insurers", headers={"accept-language": "en"})
    assert api.status_code == 503 and api.headers["retry-after"].isdigit()
    assert api.json() == {
        "error": {
            "code": "unavailable",
            "message": "The service is briefly unavailable. Please try again in a few seconds.",
            "field": None,
        }
    }
    health = no_database.get("/healthz")
    assert health.status_code == 503 and health.headers["retry-after"].isdigit()
    assert health.json()["db"] == "down" and health.json()["outbox_pending"] is None
    for response in (page, api, health):
        assert not any(m in response.text for m in TRACE_MARKERS)
