"""The counter device API, driven the way an evaluator vendor's device would."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, update
from starlette.testclient import TestClient

from portal import credentials
from portal.models import CounterFlag, CounterSession, Device, Rating, RollupCounterDaily
from tests.factories import World, make_world

_keys = itertools.count()


def key() -> str:
    return f"k-{datetime.now().timestamp()}-{next(_keys)}"


@pytest.fixture
def device(engine: Engine) -> tuple[int, str, World]:
    world = make_world(engine)
    with engine.begin() as conn:
        device_id, token = credentials.add_device(conn, world.insurer_a, world.branch_a)
    return device_id, token, world


def _post(client: TestClient, path: str, token: str, body: dict) -> object:
    return client.post(path, json=body, headers={"authorization": f"Bearer {token}"})


def _open_sessions(client: TestClient, token: str, staff_no: str, stage: str, n: int) -> list[str]:
    """n service sessions opened by the device, their ids."""
    return [
        _post(
            client,
            "/api/v1/counter/sessions",
            token,
            {"staff_no": staff_no, "stage": stage, "idempotency_key": key()},
        ).json()["session_id"]
        for _ in range(n)
    ]


def _now() -> str:
    return datetime.now(UTC).astimezone().isoformat()


def _acked(engine: Engine, device_id: int) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(select(Rating.id).where(Rating.source == f"device:{device_id}")).scalars()
        )


def test_device_lifecycle(client: TestClient, engine: Engine, device) -> None:  # noqa: ANN001
    device_id, token, world = device
    acked: set[str] = set()
    open_body = {
        "staff_no": world.teller_a,
        "stage": "claim",
        "ticket": "A017",
        "idempotency_key": key(),
    }
    opened = _post(client, "/api/v1/counter/sessions", token, open_body)
    assert opened.status_code == 201
    session = opened.json()
    assert session["staff"]["name"] == "王小明" and session["staff"]["staff_no"] == world.teller_a
    assert "stars" in session["staff"]
    again = _post(client, "/api/v1/counter/sessions", token, open_body)
    assert again.status_code == 200 and again.json()["session_id"] == session["session_id"]

    rate_body = {
        "session_id": session["session_id"],
        "level": "dissatisfied",
        "idempotency_key": key(),
        "occurred_at": _now(),
    }
    rated = _post(client, "/api/v1/counter/ratings", token, rate_body)
    assert rated.status_code == 201
    receipt = rated.json()
    assert set(receipt) == {"id", "leaf_hash", "recorded_at"}
    acked.add(receipt["id"])
    replay = _post(client, "/api/v1/counter/ratings", token, rate_body)
    assert replay.status_code == 200 and replay.json() == receipt
    second = _post(
        client,
        "/api/v1/counter/ratings",
        token,
        {**rate_body, "idempotency_key": key(), "level": "satisfied"},
    )
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "session_already_rated"
    changed = _post(client, "/api/v1/counter/ratings", token, {**rate_body, "level": "basic"})
    assert changed.status_code == 409

    expired = _post(
        client, "/api/v1/counter/sessions", token, {**open_body, "idempotency_key": key()}
    ).json()
    with engine.begin() as conn:
        conn.execute(
            update(CounterSession)
            .where(CounterSession.id == expired["session_id"])
            .values(
                opened_at=datetime.now(UTC) - timedelta(hours=3),
                expires_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
    late = _post(
        client,
        "/api/v1/counter/ratings",
        token,
        {**rate_body, "session_id": expired["session_id"], "idempotency_key": key()},
    )
    assert late.status_code == 422 and late.json()["error"]["code"] == "session_expired"

    foreign = _post(
        client,
        "/api/v1/counter/sessions",
        token,
        {**open_body, "staff_no": world.teller_b, "idempotency_key": key()},
    )
    assert foreign.status_code == 422 and foreign.json()["error"]["field"] == "staff_no"

    with engine.begin() as conn:
        conn.execute(
            update(Device).where(Device.id == device_id).values(revoked_at=datetime.now(UTC))
        )
    revoked = _post(
        client, "/api/v1/counter/sessions", token, {**open_body, "idempotency_key": key()}
    )
    assert revoked.status_code == 401 and revoked.headers["www-authenticate"].startswith("Bearer")
    assert _acked(engine, device_id) == acked  # exactly the acknowledged ratings


def test_rating_flags_and_completion(client: TestClient, engine: Engine, device) -> None:  # noqa: ANN001
    device_id, token, world = device
    sessions = _open_sessions(client, token, world.teller_a, "issuance", 5)
    for sid in sessions[:4]:  # four presses within seconds of opening: fast and a burst
        r = _post(
            client,
            "/api/v1/counter/ratings",
            token,
            {
                "session_id": sid,
                "level": "satisfied",
                "idempotency_key": key(),
                "occurred_at": _now(),
            },
        )
        assert r.status_code == 201
    with engine.connect() as conn:
        kinds = conn.execute(
            select(CounterFlag.kind, func.count())
            .where(CounterFlag.device_id == device_id)
            .group_by(CounterFlag.kind)
        ).all()
        opened, rated = conn.execute(
            select(func.sum(RollupCounterDaily.opened), func.sum(RollupCounterDaily.rated))
        ).one()
        sessions_n = conn.execute(select(func.count()).select_from(CounterSession)).scalar_one()
        rated_n = conn.execute(
            select(func.count())
            .select_from(CounterSession)
            .where(CounterSession.rating_id.is_not(None))
        ).scalar_one()
    assert dict(kinds) == {"fast_rating": 4, "burst": 1}
    assert (opened, rated) == (sessions_n, rated_n)  # the rollup agrees with the sessions


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("not json", 400, "malformed_json"),
        (json.dumps([1, 2]), 400, "malformed_json"),
        (json.dumps({"stage": "claim", "idempotency_key": "x"}), 400, "missing_field"),
        (json.dumps({"staff_no": 7, "stage": "claim", "idempotency_key": "x"}), 400, "wrong_type"),
        (
            json.dumps({"staff_no": "ZZ0001", "stage": "payment", "idempotency_key": "x"}),
            422,
            "invalid_stage",
        ),
        ("x" * (64 * 1024 + 1), 413, "payload_too_large"),
    ],
)
def test_bad_session_requests(
    client: TestClient,
    engine: Engine,
    device,
    body: str,  # noqa: ANN001
    status: int,
    code: str,
) -> None:
    _, token, _ = device
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(CounterSession)).scalar_one()
    r = client.post(
        "/api/v1/counter/sessions",
        content=body.encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(CounterSession)).scalar_one() == before


def test_bad_rating_requests(client: TestClient, engine: Engine, device) -> None:  # noqa: ANN001
    device_id, token, world = device
    sid = _post(
        client,
        "/api/v1/counter/sessions",
        token,
        {"staff_no": world.teller_a, "stage": "renewal", "idempotency_key": key()},
    ).json()["session_id"]
    cases = [
        ({"level": "great"}, 422, "invalid_level"),
        ({"occurred_at": "2026-11-21T10:15:00"}, 400, "missing_offset"),
        ({"occurred_at": "yesterday"}, 400, "malformed_time"),
        (
            {"occurred_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
            422,
            "time_in_future",
        ),
        ({"session_id": "0" * 32}, 404, "not_found"),
    ]
    for change, status, code in cases:
        body = {
            "session_id": sid,
            "level": "basic",
            "idempotency_key": key(),
            "occurred_at": _now(),
            **change,
        }
        r = _post(client, "/api/v1/counter/ratings", token, body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), change
    assert _acked(engine, device_id) == set()
    no_token = client.post("/api/v1/counter/ratings", json={})
    assert no_token.status_code == 401


def test_device_info_lists_the_branch_staff(client: TestClient, device) -> None:  # noqa: ANN001
    _, token, world = device
    info = client.get("/api/v1/counter/device", headers={"authorization": f"Bearer {token}"})
    assert info.status_code == 200
    assert world.teller_a in {s["staff_no"] for s in info.json()["staff"]}
    assert world.teller_b not in {s["staff_no"] for s in info.json()["staff"]}


def test_a_key_used_on_another_sessions_press_is_a_conflict(
    client: TestClient,
    engine: Engine,
    device,  # noqa: ANN001
) -> None:
    """Same key, same level, same moment, another session: a different rating (409),
    not a replay of the first one's receipt; the second session stays unrated."""
    device_id, token, world = device
    sessions = _open_sessions(client, token, world.teller_a, "claim", 2)
    used, at = key(), _now()
    body = {"level": "satisfied", "idempotency_key": used, "occurred_at": at}
    first = _post(client, "/api/v1/counter/ratings", token, {**body, "session_id": sessions[0]})
    assert first.status_code == 201
    other = _post(client, "/api/v1/counter/ratings", token, {**body, "session_id": sessions[1]})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert _acked(engine, device_id) == {first.json()["id"]}
    with engine.connect() as conn:
        rated = conn.execute(
            select(CounterSession.rating_id).where(CounterSession.id == sessions[1])
        ).scalar_one()
    assert rated is None
