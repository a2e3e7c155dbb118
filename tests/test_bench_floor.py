"""The durable-write floor of the ingest benchmark (bench/floor_app.py) keeps what it
acknowledges, and only that: a 201 means the row is in the database, a body the bare
endpoint refuses stores nothing. Its figure would mean nothing otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from bench import floor_app
from portal.db import make_engine

BODY = (
    '{"session_id": "s1", "level": "satisfied", "idempotency_key": "k1", '
    '"occurred_at": "2026-01-01T08:00:00+08:00"}'
)
HEADERS = {"Authorization": "Bearer gpd_x", "Content-Type": "application/json"}


@pytest.fixture
def floor(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    engine = make_engine(database_url)
    floor_app.FLOOR.drop(engine, checkfirst=True)
    floor_app.FLOOR.create(engine)
    monkeypatch.setattr(floor_app, "_engine", engine)
    yield engine
    floor_app.FLOOR.drop(engine)
    engine.dispose()


def _stored(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(floor_app.FLOOR.c.body)).scalars())


def test_an_acknowledged_request_is_stored_and_a_refused_one_is_not(floor: Engine) -> None:
    # The bare apps have none of the portal's error pages: a refused body is a 500 there.
    with TestClient(floor_app.app, raise_server_exceptions=False) as client:
        assert (
            client.post("/api/v1/counter/ratings", content=BODY, headers=HEADERS).status_code == 201
        )
        no_token = client.post(
            "/api/v1/counter/ratings", content=BODY, headers={"Content-Type": "application/json"}
        )
        assert no_token.status_code == 401
        broken = client.post("/api/v1/counter/ratings", content=BODY[:-1], headers=HEADERS)
        assert broken.status_code >= 400
    assert _stored(floor) == [BODY]
