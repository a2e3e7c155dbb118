"""Registered policies: phones normalised to E.164 and stored only as keyed hashes, CSV
import with a per-row error report, and the `portal policies import` command."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from portal import policies
from portal.cli import main
from portal.config import Settings
from portal.directory import insurer_id
from portal.errors import Invalid
from portal.models import Policy
from tests.factories import make_world

KEY = b"\x07" * 32
_seq = itertools.count()


def unique_policy_no() -> str:
    return f"TP{next(_seq):04d}-{id(object()) % 100000:05d}"


@pytest.mark.parametrize(
    "raw",
    ["13800138000", "138 0013 8000", "138-0013-8000", "+86 138 0013 8000", "+8613800138000"],
)
def test_phones_are_normalised_to_e164(raw: str) -> None:
    assert policies.normalise_phone(raw) == "+8613800138000"


@pytest.mark.parametrize(
    "raw",
    ["", "12345", "0731-22334455", "139123456789", "abc", "138\x000138000", "1" * 40],
)
def test_invalid_or_landline_numbers_are_refused(raw: str) -> None:
    with pytest.raises(Invalid) as err:
        policies.normalise_phone(raw)
    assert err.value.field == "phone" and err.value.code == "invalid_phone"


def test_phone_hash_is_hmac_sha256_of_e164() -> None:
    e164 = policies.normalise_phone("138 0013 8000")
    expected = hmac.new(KEY, b"+8613800138000", hashlib.sha256).hexdigest()
    assert policies.phone_hash(KEY, e164) == expected
    assert policies.phone_hash(b"another key", e164) != expected


def test_policy_numbers_are_normalised_and_checked() -> None:
    assert policies.normalise_policy_no(" pa 2026-001 ") == "PA2026-001"
    assert policies.normalise_policy_no("ＰＡ２０２６－００１") == "PA2026-001"  # full width
    for bad in ("", "-P1", "P" * 41, "P1;DROP", "P\x001"):
        with pytest.raises(Invalid) as err:
            policies.normalise_policy_no(bad)
        assert err.value.field == "policy_no"


def test_unknown_policy_and_wrong_phone_are_the_same_refusal(engine: Engine) -> None:
    world = make_world(engine)
    number = unique_policy_no()
    right = policies.phone_hash(KEY, "+8613800138000")
    with engine.begin() as conn:
        iid = insurer_id(conn, world.insurer_a)
        assert policies.register(conn, iid, number, right) == "added"
        assert policies.find(conn, iid, number, right) > 0
        refusals = []
        for policy_no, digest in [
            (number, policies.phone_hash(KEY, "+8613900139000")),
            (unique_policy_no(), right),
        ]:
            with pytest.raises(Invalid) as err:
                policies.find(conn, iid, policy_no, digest)
            refusals.append((err.value.code, err.value.field, err.value.message))
    assert refusals[0] == refusals[1] == ("policy_not_found", "policy_no", policies.NO_MATCH)


def test_register_adds_updates_or_leaves_unchanged(engine: Engine) -> None:
    world = make_world(engine)
    number = unique_policy_no()
    first = policies.phone_hash(KEY, "+8613800138000")
    second = policies.phone_hash(KEY, "+8613900139000")
    with engine.begin() as conn:
        iid = insurer_id(conn, world.insurer_a)
        outcomes = [policies.register(conn, iid, number, h) for h in (first, first, second)]
        stored = conn.execute(select(Policy.phone_hash).where(Policy.policy_no == number)).all()
    assert outcomes == ["added", "unchanged", "updated"]
    assert stored == [(second,)]


def _csv(*lines: str) -> str:
    return "\n".join(["insurer,policy_no,phone", *lines]) + "\n"


def test_import_takes_good_rows_and_reports_bad_ones_by_line(engine: Engine) -> None:
    world = make_world(engine)
    a, b, c = (unique_policy_no() for _ in range(3))
    data = "\ufeff" + _csv(
        f"{world.insurer_a},{a},138 0013 8000",  # line 2: good
        f"NOPE,{b},13800138000",  # 3: unknown insurer
        f"{world.insurer_a},{b},12345",  # 4: bad phone
        f"{world.insurer_a},bad policy;no,13800138000",  # 5: bad policy number
        f'{world.insurer_b},"{c}",+86 139 0013 9000',  # 6: good (quoted)
        f"{world.insurer_a},{a.lower()},13800138000",  # 7: duplicate of line 2
        f"{world.insurer_a},{b}",  # 8: a column missing
        f'{world.insurer_a},"{b}\n",12345',  # 9-10: quoted newline, then a bad phone
        f"{world.insurer_a}\x00,{b},13800138000",  # 11: NUL in the insurer
    )
    with engine.begin() as conn:
        report = policies.import_csv(conn, data, KEY)
    assert (report.added, report.updated, report.unchanged) == (2, 0, 0)
    reasons = {e.line: e.error.code for e in report.errors}
    assert reasons == {
        3: "unknown_insurer",
        4: "invalid_phone",
        5: "invalid_policy_no",
        7: "duplicate",
        8: "bad_row",
        9: "invalid_phone",  # the line the record starts on, as in the visits import
        11: "unknown_insurer",
    }
    assert "line 7: The same policy is already on line 2." in [str(e) for e in report.errors]
    with engine.connect() as conn:
        rows = conn.execute(select(Policy.policy_no, Policy.phone_hash)).all()
    assert (a, policies.phone_hash(KEY, "+8613800138000")) in rows  # the hash, never the number


def test_import_refuses_a_wrong_header_and_stores_nothing(engine: Engine) -> None:
    make_world(engine)
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(Policy)).scalar_one()
    with engine.begin() as conn, pytest.raises(Invalid) as err:
        policies.import_csv(conn, "insurer,policy,phone\nTA,P1,13800138000\n", KEY)
    assert err.value.code == "bad_header"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Policy)).scalar_one() == before


@pytest.fixture
def cli(scratch_settings: Settings, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.setenv("DATABASE_URL", scratch_settings.database_url)
    monkeypatch.setenv("LEDGER_KEY_PATH", str(scratch_settings.ledger_key_path))
    monkeypatch.setenv("PHONE_KEY_PATH", str(scratch_settings.phone_key_path))
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    assert invoke("init")[0] == 0
    assert invoke("insurer", "add", "HX", "华兴示范财险")[0] == 0
    return invoke


def test_cli_imports_and_lists_rejected_lines(
    cli, scratch_settings: Settings, tmp_path: Path
) -> None:  # noqa: ANN001
    csv = tmp_path / "policies.csv"
    csv.write_text(_csv("HX,P-1,13800138000", "HX,P-2,0731-22334455", "HX,P-3,13900139000"))
    code, out, err = cli("policies", "import", str(csv), "--json")
    body = json.loads(out)
    assert code == 1  # a row was rejected: automation must notice
    assert (body["added"], body["updated"], body["unchanged"]) == (2, 0, 0)
    assert body["errors"] == [
        {
            "line": 3,
            "field": "phone",
            "code": "invalid_phone",
            "message": "Enter a valid mobile number, e.g. 138 0013 8000.",
        }
    ]
    assert "line 3: Enter a valid mobile number" in err
    code, out, err = cli("policies", "import", str(csv))
    assert code == 1 and out.strip() == "policies: 0 added, 0 updated, 2 unchanged, 1 rejected"
    key = bytes.fromhex(scratch_settings.phone_key_path.read_text().strip())
    from portal.db import make_engine

    owner = make_engine(scratch_settings.database_url)
    with owner.connect() as conn:
        stored = dict(conn.execute(select(Policy.policy_no, Policy.phone_hash)).all())
    owner.dispose()
    assert stored == {
        "P-1": policies.phone_hash(key, "+8613800138000"),
        "P-3": policies.phone_hash(key, "+8613900139000"),
    }


def test_cli_clean_file_exits_zero_and_bad_header_fails(cli, tmp_path: Path) -> None:  # noqa: ANN001
    csv = tmp_path / "policies.csv"
    csv.write_text(_csv("HX,P-9,13800138000"))
    code, out, _ = cli("policies", "import", str(csv), "--json")
    assert code == 0 and json.loads(out)["added"] == 1
    csv.write_text("policy_no,phone\nP-9,13800138000\n")
    code, out, err = cli("policies", "import", str(csv))
    assert code == 1 and out == "" and "header must be exactly" in err
