"""Insurer systems register policies through signed requests (HMAC written again here,
independently of portal.credentials)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import pytest
from sqlalchemy import Engine, func, select, update
from starlette.testclient import TestClient

from portal import credentials, policies
from portal.config import Settings
from portal.models import ApiClient, Policy
from portal.secrets_files import ensure_key_file
from tests.factories import World, make_world


@pytest.fixture
def api_client(engine: Engine) -> tuple[str, str, World]:
    world = make_world(engine)
    with engine.begin() as conn:
        client_id, secret = credentials.add_client(conn, world.insurer_a)
    return client_id, secret, world


def _signed(client_id: str, secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "x-client-id": client_id,
        "x-timestamp": stamp,
        "x-signature": f"sha256={mac}",
        "content-type": "application/json",
    }


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Policy)).scalar_one())


def _body(*rows: tuple[str, str]) -> bytes:
    return json.dumps({"policies": [{"policy_no": p, "phone": ph} for p, ph in rows]}).encode()


def test_register_and_then_verify(
    client: TestClient,
    engine: Engine,
    api_client,  # noqa: ANN001
    app_settings: Settings,
) -> None:
    client_id, secret, world = api_client
    number = f"API{uuid.uuid4().hex[:10].upper()}"
    body = _body((number, "139 0000 1111"))
    r = client.post("/api/v1/policies", content=body, headers=_signed(client_id, secret, body))
    assert r.status_code == 200 and r.json() == {"added": 1, "updated": 0, "unchanged": 0}
    key = ensure_key_file(app_settings.phone_key_path)
    with engine.connect() as conn:
        iid = conn.execute(
            select(ApiClient.insurer_id).where(ApiClient.client_id == client_id)
        ).scalar_one()
        stored = conn.execute(select(Policy.phone_hash).where(Policy.policy_no == number))
        digest = stored.scalar_one()
        assert "13900001111" not in digest  # only the keyed hash is kept
        assert policies.find(conn, iid, number, policies.phone_hash(key, "+8613900001111"))


def test_bad_signatures_store_nothing(client: TestClient, engine: Engine, api_client) -> None:  # noqa: ANN001
    client_id, secret, _ = api_client
    body = _body((f"API{uuid.uuid4().hex[:8].upper()}", "13900002222"))
    before = _count(engine)
    cases = {
        "wrong secret": _signed(client_id, "not-the-secret", body),
        "unknown client": _signed("gpc_nobody", secret, body),
        "stale timestamp": _signed(client_id, secret, body, ts=int(time.time()) - 400),
        "future timestamp": _signed(client_id, secret, body, ts=int(time.time()) + 400),
        "no headers": {"content-type": "application/json"},
    }
    for name, headers in cases.items():
        r = client.post("/api/v1/policies", content=body, headers=headers)
        assert r.status_code == 401, name
    changed = body.replace(b"13900002222", b"13900003333")  # body changed after signing
    r = client.post("/api/v1/policies", content=changed, headers=_signed(client_id, secret, body))
    assert r.status_code == 401
    with engine.begin() as conn:
        conn.execute(
            update(ApiClient).where(ApiClient.client_id == client_id).values(revoked_at=func.now())
        )
    r = client.post("/api/v1/policies", content=body, headers=_signed(client_id, secret, body))
    assert r.status_code == 401
    assert _count(engine) == before


def test_one_bad_row_stores_nothing(client: TestClient, engine: Engine, api_client) -> None:  # noqa: ANN001
    client_id, secret, _ = api_client
    body = _body((f"API{uuid.uuid4().hex[:8].upper()}", "13900004444"), ("OK123", "12345"))
    before = _count(engine)
    r = client.post("/api/v1/policies", content=body, headers=_signed(client_id, secret, body))
    assert r.status_code == 422 and r.json()["error"]["field"] == "policies[1].phone"
    assert _count(engine) == before
    empty = json.dumps({"policies": []}).encode()
    r = client.post("/api/v1/policies", content=empty, headers=_signed(client_id, secret, empty))
    assert r.status_code == 400


def test_the_window_is_300_seconds_exactly(engine: Engine, api_client) -> None:  # noqa: ANN001
    """At the edges, with a fixed clock (the HTTP tests keep a margin from real time)."""
    from datetime import UTC, datetime

    from portal.errors import Unauthorized

    client_id, secret, _ = api_client
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    body = b"{}"
    with engine.connect() as conn:
        for offset, ok in ((-300, True), (300, True), (-301, False), (301, False)):
            h = _signed(client_id, secret, body, ts=int(now.timestamp()) + offset)
            args = (conn, client_id, h["x-timestamp"], h["x-signature"], body)
            if ok:
                assert credentials.authenticate_client(*args, now=now).client_id == client_id
            else:
                with pytest.raises(Unauthorized):
                    credentials.authenticate_client(*args, now=now)
