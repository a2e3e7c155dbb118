"""Insurer device management and the counter reports, as their users see them."""

from __future__ import annotations

import re

from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from portal import credentials
from portal.models import Device
from tests.factories import World
from tests.web.conftest import BASE, csrf_of, login, text_of


def _register(client: TestClient, branch: str, label: str) -> object:
    page = client.get("/insurer/counter")
    return client.post(
        "/insurer/devices",
        data={"branch": branch, "label": label, "csrf_token": csrf_of(page.text)},
        headers={"origin": BASE},
    )


def test_insurer_registers_a_device_and_sees_the_token_once(
    client: TestClient, users: World, engine: Engine
) -> None:
    login(client, "ins-a")
    created = _register(client, users.branch_a, "3号窗口")
    assert created.status_code == 201
    token = re.search(r"gpd_[A-Za-z0-9_-]+", created.text).group(0)
    with engine.connect() as conn:
        device = credentials.device_for_token(conn, token)
    assert device.label == "3号窗口"
    again = client.get("/insurer/counter").text
    assert token not in again and "3号窗口" in again  # listed, token never shown again


def test_insurer_cannot_register_at_another_insurers_branch(
    client: TestClient, users: World
) -> None:
    login(client, "ins-a")
    r = _register(client, users.branch_b, "x")
    assert r.status_code == 422 and "gpd_" not in r.text


def test_revoke_only_own_devices(client: TestClient, users: World, engine: Engine) -> None:
    with engine.begin() as conn:
        mine, token = credentials.add_device(conn, users.insurer_a, users.branch_a)
        theirs, _ = credentials.add_device(conn, users.insurer_b, users.branch_b)
    login(client, "ins-a")
    page = client.get("/insurer/counter")
    csrf = csrf_of(page.text)
    other = client.post(
        f"/insurer/devices/{theirs}/revoke",
        data={"csrf_token": csrf},
        headers={"origin": BASE},
        follow_redirects=False,
    )
    assert other.status_code == 404
    ok = client.post(
        f"/insurer/devices/{mine}/revoke",
        data={"csrf_token": csrf},
        headers={"origin": BASE},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    with engine.connect() as conn:
        revoked = dict(
            conn.execute(
                select(Device.id, Device.revoked_at).where(Device.id.in_([mine, theirs]))
            ).all()
        )
    assert revoked[mine] is not None and revoked[theirs] is None
    api = client.post(
        "/api/v1/counter/sessions", json={}, headers={"authorization": f"Bearer {token}"}
    )
    assert api.status_code == 401


def test_insurer_counter_page_lists_own_staff_only(client: TestClient, users: World) -> None:
    login(client, "ins-a")
    page = text_of(client.get("/insurer/counter", headers={"accept-language": "en"}).text)
    assert "王小明" in page and "李晓红" not in page


def test_offer_rate_per_teller_is_shown(client: TestClient, users: World, engine: Engine) -> None:
    from bs4 import BeautifulSoup

    from portal import directory

    with engine.begin() as conn:
        directory.import_staff(
            conn,
            [directory.StaffRow(users.insurer_a, users.branch_a, "ZZ0777", "赵测试", "teller")],
        )
        _, token = credentials.add_device(conn, users.insurer_a, users.branch_a)
    auth = {"authorization": f"Bearer {token}"}
    sessions = [
        client.post(
            "/api/v1/counter/sessions",
            headers=auth,
            json={"staff_no": "ZZ0777", "stage": "claim", "idempotency_key": f"offer-{i}"},
        ).json()["session_id"]
        for i in range(4)
    ]
    client.post(
        "/api/v1/counter/ratings",
        headers=auth,
        json={
            "session_id": sessions[0],
            "level": "basic",
            "idempotency_key": "r0",
            "occurred_at": "2026-01-01T10:00:00+08:00",
        },
    )  # before it opened: refused
    from datetime import UTC, datetime

    ok = client.post(
        "/api/v1/counter/ratings",
        headers=auth,
        json={
            "session_id": sessions[1],
            "level": "basic",
            "idempotency_key": "r1",
            "occurred_at": datetime.now(UTC).isoformat(),
        },
    )
    assert ok.status_code == 201
    login(client, "ins-a")
    soup = BeautifulSoup(client.get("/insurer/counter").text, "html.parser")
    row = next(tr for tr in soup.select("tr") if "ZZ0777" in tr.get_text())
    cells = [td.get_text(strip=True) for td in row.find_all("td")]
    assert cells[-2:] == ["4", "25.0%"]  # 4 sessions offered, 1 rated
