"""Policies in force: CSV through the CLI, the signed API, and the per-10,000 figures."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from portal import credentials
from portal.cli import main
from portal.config import Settings
from portal.db import make_engine
from portal.models import PoliciesInForce
from portal.policies_in_force import parse_csv
from tests.factories import World


def _stored(engine: Engine) -> dict[tuple[int, date], int]:
    with engine.connect() as conn:
        rows = conn.execute(select(PoliciesInForce.insurer_id, PoliciesInForce.month,
                                   PoliciesInForce.policies))  # fmt: skip
        return {(i, m): p for i, m, p in rows}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("insurer,month\nTA,2024-04\n", "bad_header"),
        ("insurer,month,policies\nTA,2024-13,100\n", "invalid_month"),
        ("insurer,month,policies\nTA,24-01,100\n", "invalid_month"),
        ("insurer,month,policies\nTA,2024-04,-5\n", "invalid_policies"),
        ("insurer,month,policies\nTA,2024-04,0\n", "invalid_policies"),
        ("insurer,month,policies\nTA,2024-04,1.5\n", "invalid_policies"),
        ("insurer,month,policies\nTA,2024-04\n", "bad_row"),
    ],
)
def test_bad_csv_is_refused_with_a_reason(data: str, code: str) -> None:
    from portal.errors import Invalid

    with pytest.raises(Invalid) as err:
        parse_csv(data)
    assert err.value.code == code


def test_cli_import_all_or_nothing(scratch_settings: Settings, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.setenv("DATABASE_URL", scratch_settings.database_url)
    runner = CliRunner()
    assert runner.invoke(main, ["insurer", "add", "PA", "平安示范"]).exit_code == 0
    good = tmp_path / "good.csv"
    good.write_text("insurer,month,policies\nPA,2024-04,120000\npa,2024-05,130000\n")
    r = runner.invoke(main, ["policies-in-force", "import", str(good), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == {"months": 2}
    bad = tmp_path / "bad.csv"
    bad.write_text("insurer,month,policies\nPA,2024-06,1\nNOPE,2024-06,5\n")
    r = runner.invoke(main, ["policies-in-force", "import", str(bad)])
    assert r.exit_code == 1 and "NOPE" in r.stderr
    engine = make_engine(scratch_settings.database_url)
    try:
        assert sorted(_stored(engine).values()) == [120000, 130000]
    finally:
        engine.dispose()


def _signed(client_id: str, secret: str, body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"x-client-id": client_id, "x-timestamp": stamp, "x-signature": f"sha256={mac}",
            "content-type": "application/json"}  # fmt: skip


def test_signed_api_reports_the_clients_own_insurer(
    client: TestClient, engine: Engine, users: World
) -> None:
    with engine.begin() as conn:
        client_id, secret = credentials.add_client(conn, users.insurer_b)
    before = _stored(engine)
    bad = json.dumps({"months": [{"month": "2023-01", "policies": 5},
                                 {"month": "2023-02", "policies": "many"}]}).encode()  # fmt: skip
    r = client.post(
        "/api/v1/policies-in-force", content=bad, headers=_signed(client_id, secret, bad)
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "months[1].policies"
    assert _stored(engine) == before
    body = json.dumps({"months": [{"month": "2023-01", "policies": 300000}]}).encode()
    r = client.post(
        "/api/v1/policies-in-force", content=body, headers=_signed(client_id, secret, body)
    )
    assert r.status_code == 200 and r.json() == {"months": 1}
    forged = client.post("/api/v1/policies-in-force", content=body,
                         headers=_signed(client_id, "wrong-secret", body))  # fmt: skip
    assert forged.status_code == 401
    added = set(_stored(engine)) - set(before)
    assert len(added) == 1 and next(iter(added))[1] == date(2023, 1, 1)
