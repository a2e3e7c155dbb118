"""Phone pages and the return-visit API: client secrets shown once, and an unreachable
number corrected on the campaign page (who may use which route: test_access_matrix.py)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from portal import credentials
from portal.config import Settings
from portal.models import ApiClient, VisitTask
from portal.secrets_files import ensure_key_file
from portal.stars import china_today
from portal.visit_schedule import is_call_day
from tests.factories import make_phone_staff
from tests.web.conftest import BASE, csrf_of, login, text_of
from tests.web.test_phone_api import sign


def test_insurer_client_secret_shown_once_rotated_and_revoked(
    client: TestClient,
    engine: Engine,
    users,  # noqa: ANN001
) -> None:
    login(client, "ins-a")
    page = client.get("/insurer/phone")
    r = client.post(
        "/insurer/clients", data={"csrf_token": csrf_of(page.text)}, headers={"origin": BASE}
    )
    assert r.status_code == 201
    client_id = re.search(r"gpc_[0-9a-f]{16}", r.text).group(0)
    with engine.connect() as conn:
        secret = conn.execute(
            select(ApiClient.secret).where(ApiClient.client_id == client_id)
        ).scalar_one()
    assert secret in r.text
    assert secret not in client.get("/insurer/phone").text  # shown once
    csrf = csrf_of(r.text)
    rotated = client.post(
        f"/insurer/clients/{client_id}/rotate", data={"csrf_token": csrf}, headers={"origin": BASE}
    )
    with engine.connect() as conn:
        new = conn.execute(
            select(ApiClient.secret).where(ApiClient.client_id == client_id)
        ).scalar_one()
    assert rotated.status_code == 200 and new != secret and new in rotated.text
    # Insurer B can neither rotate nor revoke A's client.
    with TestClient(client.app, base_url=BASE, client=("10.9.9.9", 50000)) as other:
        login(other, "ins-b")
        csrf_b = csrf_of(other.get("/insurer/phone").text)
        for action in ("rotate", "revoke"):
            r = other.post(
                f"/insurer/clients/{client_id}/{action}",
                data={"csrf_token": csrf_b},
                headers={"origin": BASE},
            )
            assert r.status_code == 404
        assert client_id not in other.get("/insurer/phone").text
    r = client.post(
        f"/insurer/clients/{client_id}/revoke",
        data={"csrf_token": csrf},
        headers={"origin": BASE},
        follow_redirects=False,
    )
    assert r.status_code == 303
    body = b"{}"
    api = client.get("/api/v1/phone/return-visits", headers=sign(client_id, new, body))
    assert api.status_code == 401


def test_return_visits_over_the_api_and_correction_on_the_page(
    client: TestClient,
    engine: Engine,
    users,
    app_settings: Settings,  # noqa: ANN001
) -> None:
    make_phone_staff(engine, ensure_key_file(app_settings.phone_key_path))
    with engine.begin() as conn:
        client_id, secret = credentials.add_client(conn, "TA")
    today = china_today()
    policy = f"WEB{uuid.uuid4().hex[:8].upper()}"
    items = [
        {
            "kind": "claim",
            "policy_no": policy,
            "phone": "13800000071",
            "staff_no": "AD0001",
            "date": (today - timedelta(days=20)).isoformat(),
            "customer": "C71",
        }
    ]
    bad = json.dumps({"visits": items + [items[0] | {"phone": "123"}]}).encode()
    r = client.post(
        "/api/v1/phone/return-visits", content=bad, headers=sign(client_id, secret, bad)
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "visits[1].phone"
    body = json.dumps({"visits": items}).encode()
    r = client.post(
        "/api/v1/phone/return-visits", content=body, headers=sign(client_id, secret, body)
    )
    assert r.status_code == 200 and r.json()["added"] == 1
    with engine.connect() as conn:
        task = conn.execute(select(VisitTask).where(VisitTask.policy_no == policy)).one()
    day = task.due_from  # the first day of a cycle is always a call day
    assert is_call_day(day)
    r = client.get(
        f"/api/v1/phone/return-visits?date={day.isoformat()}", headers=sign(client_id, secret, b"")
    )
    assert r.status_code == 200
    listed = [v for v in r.json()["visits"] if v["policy_no"] == policy]
    assert listed and listed[0]["phone"] == "+8613800000071" and listed[0]["attempt"] == 1
    # The insurer hands in a corrected number for an unreachable visit.
    with engine.begin() as conn:
        conn.execute(
            VisitTask.__table__.update().where(VisitTask.id == task.id).values(status="unreachable")
        )
    login(client, "ins-a")
    page = client.get("/insurer/visits", headers={"accept-language": "en"})
    assert policy in page.text and "138****0071" in page.text and "13800000071" not in page.text
    csrf = csrf_of(page.text)
    r = client.post(
        f"/insurer/visits/{task.id}/phone",
        data={"csrf_token": csrf, "phone": "12"},
        headers={"origin": BASE, "accept-language": "en"},
    )
    assert r.status_code == 422 and "valid mobile number" in text_of(r.text)
    r = client.post(
        f"/insurer/visits/{task.id}/phone",
        data={"csrf_token": csrf, "phone": "139 0000 0071"},
        headers={"origin": BASE},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with engine.connect() as conn:
        fixed = conn.execute(select(VisitTask).where(VisitTask.id == task.id)).one()
    assert (fixed.status, fixed.cycle, fixed.phone) == ("open", 2, "+8613900000071")
    assert fixed.due_from >= today


def test_secret_pages_are_not_stored_and_only_a_rotation_says_the_old_secret_is_gone(
    client: TestClient,
    users,  # noqa: ANN001
) -> None:
    login(client, "ins-a")
    en = {"origin": BASE, "accept-language": "en"}
    csrf = csrf_of(client.get("/insurer/phone").text)
    created = client.post("/insurer/clients", data={"csrf_token": csrf}, headers=en)
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    assert "no longer works" not in text_of(created.text)  # a new client had no secret
    client_id = re.search(r"gpc_[0-9a-f]{16}", created.text).group(0)
    rotated = client.post(
        f"/insurer/clients/{client_id}/rotate", data={"csrf_token": csrf}, headers=en
    )
    assert rotated.status_code == 200
    assert rotated.headers["cache-control"] == "no-store"
    assert "Any earlier secret of this client no longer works." in text_of(rotated.text)


def test_visits_page_counts_rated_visits_says_when_the_list_is_cut_and_warns_of_the_calendar(
    client: TestClient,
    engine: Engine,
    users,  # noqa: ANN001
    app_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from portal import phone_reports, workdays

    make_phone_staff(engine, ensure_key_file(app_settings.phone_key_path))
    with engine.begin() as conn:
        client_id, secret = credentials.add_client(conn, "TA")
    day = (china_today() - timedelta(days=20)).isoformat()
    items = [
        {
            "kind": "claim",
            "policy_no": f"CUT{uuid.uuid4().hex[:8].upper()}",
            "phone": f"1380000009{i}",
            "staff_no": "AD0001",
            "date": day,
            "customer": f"CUT{i}",
        }
        for i in range(2)
    ]
    body = json.dumps({"visits": items}).encode()
    r = client.post(
        "/api/v1/phone/return-visits", content=body, headers=sign(client_id, secret, body)
    )
    assert r.status_code == 200, r.text
    with engine.begin() as conn:
        conn.execute(
            VisitTask.__table__.update()
            .where(VisitTask.policy_no.in_([i["policy_no"] for i in items]))
            .values(status="unreachable")
        )
    monkeypatch.setattr(phone_reports, "UNREACHABLE_LIMIT", 1)
    monkeypatch.setattr(workdays, "known", lambda day: False)  # as for 2027 in 1.11.0
    login(client, "ins-a")
    page = text_of(client.get("/insurer/visits", headers={"accept-language": "en"}).text)
    assert "Showing the 1 oldest of" in page
    assert f"calendar for {china_today().year}" in page
    zh = text_of(client.get("/insurer/visits", headers={"accept-language": "zh-CN"}).text)
    assert "已评价" in zh and "评价率" not in zh  # a count, not a rate
    monkeypatch.setattr(workdays, "known", lambda day: True)
    assert "calendar for" not in text_of(
        client.get("/insurer/visits", headers={"accept-language": "en"}).text
    )
