"""Call-centre systems post keypad ratings and ended calls through signed requests. The
HMAC is written again here (hmac + hashlib), independently of portal.credentials."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from portal import credentials
from portal.config import Settings
from portal.models import PhoneCall, Rating
from portal.secrets_files import ensure_key_file
from tests.factories import CHINA, PhoneStaff, counts, make_phone_staff
from tests.web.conftest import login, text_of


@pytest.fixture
def phone(engine: Engine, app_settings: Settings) -> tuple[str, str, PhoneStaff]:
    staff = make_phone_staff(engine, ensure_key_file(app_settings.phone_key_path))
    with engine.begin() as conn:
        client_id, secret = credentials.add_client(conn, "TA")
    return client_id, secret, staff


def sign(client_id: str, secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "x-client-id": client_id,
        "x-timestamp": stamp,
        "x-signature": f"sha256={mac}",
        "content-type": "application/json",
    }


def rating_body(**over: Any) -> bytes:
    body = {
        "call_id": f"C-{uuid.uuid4().hex[:12]}",
        "kind": "hotline",
        "stage": "renewal",
        "agent_no": "CC1042",
        "digits": "4",
        "scale": 5,
        "occurred_at": (datetime.now(CHINA) - timedelta(minutes=3)).isoformat(),
        "policy_no": None,
        "caller_phone": "+8613800000000",
    }
    return json.dumps(body | over).encode()


def post(client: TestClient, path: str, ids: tuple[str, str, Any], body: bytes) -> Any:
    return client.post(path, content=body, headers=sign(ids[0], ids[1], body))


def test_hotline_rating_gives_a_receipt_and_a_replay_the_same_one(
    client: TestClient, engine: Engine, phone: tuple[str, str, PhoneStaff]
) -> None:
    body = rating_body()
    first = post(client, "/api/v1/phone/ratings", phone, body)
    assert first.status_code == 201, first.text
    receipt = first.json()
    assert set(receipt) == {"id", "leaf_hash", "recorded_at"}
    # The replay is signed again, with its own fresh timestamp: the call_id decides.
    again = post(client, "/api/v1/phone/ratings", phone, body)
    assert again.status_code == 200 and again.json() == receipt
    call_id = json.loads(body)["call_id"]
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count()).select_from(Rating).where(Rating.idempotency_key == call_id)
        ).scalar_one()
        stored = conn.execute(select(Rating).where(Rating.id == receipt["id"])).one()
    assert n == 1
    assert (stored.channel, stored.stage, stored.scale, stored.value) == ("phone", "renewal", 5, 4)
    changed = body.replace(b'"digits": "4"', b'"digits": "1"')
    conflict = post(client, "/api/v1/phone/ratings", phone, changed)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"


def test_three_level_scale(client: TestClient, engine: Engine, phone) -> None:  # noqa: ANN001
    r = post(client, "/api/v1/phone/ratings", phone, rating_body(scale=3, digits="1"))
    assert r.status_code == 201
    with engine.connect() as conn:
        score = conn.execute(select(Rating.score).where(Rating.id == r.json()["id"])).scalar()
    assert score == 100  # 1 = satisfied on the 3-level scale
    for over, status, field in [
        ({"scale": 3, "digits": "4"}, 422, "digits"),
        ({"digits": "³"}, 422, "digits"),  # str.isdigit() is true, int() raised: 500
        ({"digits": "４"}, 422, "digits"),  # full-width: was stored as a 4
        ({"digits": "٤"}, 422, "digits"),  # Arabic-Indic
        ({"scale": 4}, 422, "scale"),
        ({"kind": "chat"}, 422, "kind"),
        ({"agent_no": "NOBODY"}, 422, "agent_no"),
        ({"agent_no": "CB0001"}, 422, "agent_no"),  # insurer B's agent
        ({"occurred_at": "2026-11-21T10:15:00"}, 400, "occurred_at"),
        ({"scale": "5"}, 400, "scale"),
    ]:
        before = counts(engine)
        bad = post(client, "/api/v1/phone/ratings", phone, rating_body(**over))
        assert bad.status_code == status, (over, bad.text)
        assert bad.json()["error"]["field"] == field
        assert counts(engine) == before


def test_bad_signatures_are_refused_and_store_nothing(
    client: TestClient, engine: Engine, phone: tuple[str, str, PhoneStaff]
) -> None:
    client_id, secret, _ = phone
    body = rating_body()
    now = int(time.time())
    cases = {
        "wrong signature": sign(client_id, "not-the-secret", body),
        "unknown client": sign("gpc_nobody", secret, body),
        "stale timestamp": sign(client_id, secret, body, ts=now - 400),
        "future timestamp": sign(client_id, secret, body, ts=now + 400),
        "no headers": {"content-type": "application/json"},
    }
    before = counts(engine)
    for name, headers in cases.items():
        r = client.post("/api/v1/phone/ratings", content=body, headers=headers)
        assert r.status_code == 401, name
        assert set(r.json()["error"]) == {"code", "message", "field"}
    signed = sign(client_id, secret, body, ts=now - 10)  # captured 10 s ago
    changed = body.replace(b'"digits": "4"', b'"digits": "5"')  # body changed after signing
    assert client.post("/api/v1/phone/ratings", content=changed, headers=signed).status_code == 401
    # A captured request re-sent later with a fresh timestamp: the signature no longer fits.
    fresh = signed | {"x-timestamp": str(now)}
    assert client.post("/api/v1/phone/ratings", content=body, headers=fresh).status_code == 401
    assert counts(engine) == before


def test_rotated_and_revoked_clients(client: TestClient, engine: Engine, phone) -> None:  # noqa: ANN001
    client_id, secret, _ = phone
    with engine.begin() as conn:
        new_secret = credentials.rotate_client(conn, client_id)
    old = post(client, "/api/v1/phone/ratings", (client_id, secret, None), rating_body())
    assert old.status_code == 401
    ok = post(client, "/api/v1/phone/ratings", (client_id, new_secret, None), rating_body())
    assert ok.status_code == 201
    with engine.begin() as conn:
        credentials.revoke_client(conn, client_id)
    gone = post(client, "/api/v1/phone/ratings", (client_id, new_secret, None), rating_body())
    assert gone.status_code == 401


def call_body(**over: Any) -> bytes:
    body = {
        "call_id": f"C-{uuid.uuid4().hex[:12]}",
        "agent_no": "CC1042",
        "survey_offered": True,
        "hung_up_before_survey": False,
    }
    return json.dumps(body | over).encode()


def test_ended_calls_give_survey_offer_and_completion_rates(
    client: TestClient,
    engine: Engine,
    users,
    phone: tuple[str, str, PhoneStaff],  # noqa: ANN001
) -> None:
    client_id, secret, staff = phone
    agent = f"CX{uuid.uuid4().hex[:6].upper()}"  # an agent of its own, for exact figures
    with engine.begin() as conn:
        from portal import directory

        directory.import_staff(
            conn, [directory.StaffRow("TA", "TA-ZZ01", agent, "吴新人", "call_agent")]
        )
    rated = call_body(agent_no=agent)
    calls = [
        rated,
        call_body(agent_no=agent),  # offered, caller did not press
        call_body(agent_no=agent, survey_offered=False),  # not offered
        call_body(agent_no=agent, survey_offered=False, hung_up_before_survey=True),
    ]
    for body in calls:
        r = post(client, "/api/v1/phone/calls", phone, body)
        assert r.status_code == 201, r.text
    again = post(client, "/api/v1/phone/calls", phone, calls[0])
    assert again.status_code == 200
    other = call_body(call_id=json.loads(rated)["call_id"], survey_offered=False, agent_no=agent)
    assert post(client, "/api/v1/phone/calls", phone, other).status_code == 409
    both = call_body(hung_up_before_survey=True)
    assert post(client, "/api/v1/phone/calls", phone, both).status_code == 422
    call_id = json.loads(rated)["call_id"]
    r = post(client, "/api/v1/phone/ratings", phone, rating_body(call_id=call_id, agent_no=agent))
    assert r.status_code == 201
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(PhoneCall).where(PhoneCall.call_id == call_id)
            ).scalar_one()
            == 1
        )
    login(client, "ins-a")
    page = client.get("/insurer/phone", headers={"accept-language": "en"})
    assert page.status_code == 200
    row = next(line for line in text_of(page.text).split("吴新人")[1:2])
    # 4 calls, 1 hung up first; offered in 2 of the 3 others (66.7%); 1 of 2 rated (50%).
    assert row.split()[:5] == [agent, "4", "1", "66.7%", "50.0%"]


def test_a_non_ascii_signature_is_refused_not_a_crash(
    client: TestClient, engine: Engine, phone: tuple[str, str, PhoneStaff]
) -> None:
    """hmac.compare_digest raised TypeError on a non-ASCII str: a 500."""
    body = rating_body()
    before = counts(engine)
    for value in ("sha256=é".encode("latin-1"), "sha256=签名".encode(), b"sha256=\xff"):
        headers = sign(phone[0], phone[1], body) | {"x-signature": value}
        r = client.post("/api/v1/phone/ratings", content=body, headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "bad_signature"
    assert credentials.check_signature("secret", "1", b"", "sha256=é") is False
    assert counts(engine) == before


def test_due_list_cursor_and_honest_upload_limit(
    client: TestClient, phone: tuple[str, str, PhoneStaff]
) -> None:
    from portal.web.api import MAX_BODY
    from portal.web.phone_api import MAX_VISITS

    for query, field in (("page=2", "page"), ("cursor=yesterday", "cursor")):
        r = client.get(f"/api/v1/phone/return-visits?{query}", headers=sign(*phone[:2], b""))
        assert r.status_code == 400 and r.json()["error"]["field"] == field, r.text
    spec = client.get("/api/v1/openapi.json").json()
    visits_in = spec["components"]["schemas"]["VisitsIn"]["properties"]["visits"]
    assert visits_in["maxItems"] == MAX_VISITS
    item = {
        "kind": "new_policy",
        "policy_no": "PICC2026110100012345",
        "phone": "+86 138 0000 0000",
        "staff_no": "AG000123",
        "date": "2026-09-01",
        "customer": "110101199003071234",
    }
    assert len(json.dumps({"visits": [item] * MAX_VISITS}).encode()) < MAX_BODY
