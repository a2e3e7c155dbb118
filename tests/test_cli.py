"""The operator CLI: --json output, clear errors on stderr, nothing stored on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select, text

from portal.cli import main
from portal.config import Settings
from portal.models import Branch, Insurer, Staff


@pytest.fixture
def run(scratch_settings: Settings, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.setenv("DATABASE_URL", scratch_settings.database_url)
    monkeypatch.setenv("LEDGER_KEY_PATH", str(scratch_settings.ledger_key_path))
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:  # noqa: A002
        result = runner.invoke(main, list(args), input=input, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    assert invoke("init", "--json")[0] == 0
    return invoke


def _count(settings: Settings, table: type) -> int:
    from portal.db import make_engine

    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    engine.dispose()
    return n


def test_directory_commands_print_json(run, scratch_settings: Settings, tmp_path: Path) -> None:  # noqa: ANN001
    code, out, _ = run("insurer", "add", "hx", "华兴示范财险", "--json")
    assert code == 0 and json.loads(out)["code"] == "HX"
    code, out, _ = run("branch", "add", "HX", "HX-ZZ01", "华兴株洲中支", "430200", "--json")
    assert code == 0 and json.loads(out)["region"] == "430200"
    csv = tmp_path / "staff.csv"
    csv.write_text(
        "insurer,branch,staff_no,name,role\nHX,HX-ZZ01,ZZ0231,王小明,teller\n"
        "HX,HX-ZZ01,ZZ0232,李四,adjuster\n",
        encoding="utf-8",
    )
    code, out, _ = run("staff", "import", str(csv), "--json")
    assert code == 0 and json.loads(out) == {"added": 2, "updated": 0}
    code, out, _ = run("device", "add", "HX", "HX-ZZ01", "--json")
    body = json.loads(out)
    assert code == 0 and body["device_id"] and body["token"].startswith("gpd_")
    code, out, _ = run("client", "add", "HX", "--json")
    assert code == 0 and set(json.loads(out)) == {"client_id", "secret"}
    code, out, _ = run(
        "user",
        "add",
        "hx-boss",
        "--role",
        "insurer",
        "--insurer",
        "HX",
        "--json",
        input="a long enough password\n",
    )
    assert code == 0 and json.loads(out)["role"] == "insurer"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("branch", "add", "HX", "B1", "某支公司", "999999"), "GB/T 2260"),
        (("branch", "add", "HX", "B1", "某支公司", "4302"), "GB/T 2260"),
        (("branch", "add", "NOPE", "B1", "某支公司", "430200"), "Unknown insurer"),
        (("insurer", "add", "H X", "坏代码"), "not a valid code"),
        (("insurer", "add", "HX", "重复"), "already exists"),
        (("insurer", "add", "HY", "坏格式", "--policy-format", "HY(\\d"), "regular expression"),
        (("insurer", "add", "HY", "太宽", "--policy-format", "\\d*"), "ordinary text"),
        (("insurer", "policy-format", "HX", "[0-9]+"), "ordinary text"),
    ],
)
def test_bad_arguments_fail_cleanly_and_store_nothing(
    run,
    scratch_settings: Settings,  # noqa: ANN001
    args: tuple[str, ...],
    message: str,
) -> None:
    run("insurer", "add", "HX", "华兴示范财险")
    before = _count(scratch_settings, Insurer), _count(scratch_settings, Branch)
    code, out, err = run(*args)
    assert code == 1 and out == "" and message in err
    assert (_count(scratch_settings, Insurer), _count(scratch_settings, Branch)) == before


def test_staff_import_is_all_or_nothing(run, scratch_settings: Settings, tmp_path: Path) -> None:  # noqa: ANN001
    run("insurer", "add", "HX", "华兴示范财险")
    run("branch", "add", "HX", "HX-ZZ01", "华兴株洲中支", "430200")
    csv = tmp_path / "staff.csv"
    csv.write_text(
        "insurer,branch,staff_no,name,role\nHX,HX-ZZ01,ZZ1,甲,teller\nHX,HX-ZZ01,ZZ2,乙,janitor\n",
        encoding="utf-8",
    )
    code, _, err = run("staff", "import", str(csv))
    assert code == 1 and "Line 3" in err
    csv.write_text(
        "insurer,branch,staff_no,name,role\nHX,HX-ZZ01,ZZ1,甲,teller\nHX,NOPE,ZZ2,乙,teller\n",
        encoding="utf-8",
    )
    code, _, err = run("staff", "import", str(csv))
    assert code == 1 and "no branch" in err
    assert _count(scratch_settings, Staff) == 0


def test_user_add_refuses_a_short_password(run) -> None:  # noqa: ANN001
    code, _, err = run("user", "add", "reg", "--role", "regulator", input="short\n")
    assert code == 1 and "at least 10" in err


def test_checkpoint_and_verify(run, scratch_settings: Settings) -> None:  # noqa: ANN001
    code, out, _ = run("demo", "--ratings", "300", "--json")
    assert code == 0 and json.loads(out)["tree_size"] == 300
    code, out, _ = run("checkpoint", "--json")
    assert code == 0 and json.loads(out)["tree_size"] == 300
    code, out, _ = run("verify", "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    _tamper_first_rating(scratch_settings)
    code, out, _ = run("verify", "--json")
    body = json.loads(out)
    assert code == 1 and len(body["ratings"]) == 1 and body["ratings"][0] in out


def _tamper_first_rating(settings: Settings) -> None:
    from portal.db import make_engine

    owner: Engine = make_engine(settings.database_url)
    with owner.begin() as conn:
        if owner.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE ratings DISABLE TRIGGER ratings_no_change"))
        else:
            conn.execute(text("DROP TRIGGER ratings_no_update"))
        # score + 1 changes the row whatever the (random) first rating holds
        conn.execute(
            text("UPDATE ratings SET score = score + 1 WHERE id = (SELECT min(id) FROM ratings)")
        )
    owner.dispose()


def test_visits_import_and_client_rotate_revoke(run, tmp_path: Path) -> None:  # noqa: ANN001
    from datetime import timedelta

    from portal.stars import china_today

    run("insurer", "add", "VX", "回访示范保险")
    run("branch", "add", "VX", "VX-1", "回访示范中支", "430200")
    staff = tmp_path / "staff.csv"
    staff.write_text(
        "insurer,branch,staff_no,name,role,phone\nVX,VX-1,AG1,钱销售,agent,13700000001\n",
        encoding="utf-8",
    )
    assert run("staff", "import", str(staff), "--json")[0] == 0
    day = (china_today() - timedelta(days=2)).isoformat()
    csv = tmp_path / "visits.csv"
    csv.write_text(
        "insurer,kind,policy_no,phone,staff_no,date,customer\n"
        f"VX,new_policy,P1,13800000001,AG1,{day},C1\n"
        f"VX,new_policy,P2,not-a-phone,AG1,{day},C2\n",
        encoding="utf-8",
    )
    code, out, err = run("visits", "import", str(csv), "--json")
    body = json.loads(out)
    assert code == 1 and body["added"] == 1
    assert [(e["line"], e["field"]) for e in body["errors"]] == [(3, "phone")]
    assert "line 3:" in err
    code, out, _ = run("client", "add", "VX", "--json")
    client_id = json.loads(out)["client_id"]
    code, out, _ = run("client", "rotate", client_id, "--json")
    assert code == 0 and json.loads(out)["secret"]
    assert run("client", "revoke", client_id, "--json")[0] == 0
    code, _, err = run("client", "rotate", client_id)
    assert code == 1 and "no active API client" in err


def test_policy_format_masks_policy_numbers_in_published_texts(
    run,
    scratch_settings: Settings,  # noqa: ANN001
) -> None:
    from portal.db import make_engine
    from portal.models import Insurer as Ins
    from portal.reviews import mask_text

    code, out, _ = run(
        "insurer", "add", "HX", "华兴示范财险", "--policy-format", "HX\\d{12}", "--json"
    )
    assert code == 0 and json.loads(out)["policy_format"] == "HX\\d{12}"
    engine = make_engine(scratch_settings.database_url)
    with engine.connect() as conn:
        fmt = conn.execute(select(Ins.policy_format).where(Ins.code == "HX")).scalar_one()
    engine.dispose()
    text = "保单号HX202611220001理赔慢，另一家的P123456789012不是我们的格式"
    assert (
        mask_text(text, (fmt,)) == "保单号**********0001理赔慢，另一家的P123456789012不是我们的格式"
    )
    assert run("insurer", "policy-format", "HX")[0] == 0  # cleared
