"""CSV imports with broken input, through the CLI as an operator runs them: `portal staff
import`, `portal visits import`, `portal policies import`, `portal policies-in-force
import` (the policies and visits APIs take JSON, not files: see test_schemathesis).

GBK and UTF-8 (each declared or assumed as the other), a BOM, wrong, missing and extra
columns, an empty file, an open quote, an over-long field, a NUL byte, too many rows and
a file above the size limit. Each gives a clear per-row or per-file error naming the
line, never a traceback; a rejected row stores nothing, and a file-level error (or any
error of an all-or-nothing import: staff, policies in force) stores nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from portal import cli
from portal.config import Settings
from portal.models import Staff
from portal.secrets_files import ensure_key_file
from portal.stars import china_today
from tests.factories import World
from tests.hostile.conftest import REPORT, changed, row_counts

STAFF = "insurer,branch,staff_no,name,role\n"
VISITS = "insurer,kind,policy_no,phone,staff_no,date,customer\n"
POLICIES = "insurer,policy_no,phone\n"
PIF = "insurer,month,policies\n"
LONG = "x" * (200 * 1024)  # over the csv module's 128 KiB field limit
CASES: list[str] = []


@dataclass
class Run:
    code: int
    output: str
    changed: dict[str, tuple[int, int]]


@pytest.fixture
def run(
    app_settings: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Run]:
    ensure_key_file(app_settings.phone_key_path)
    env = {
        "DATABASE_URL": app_settings.database_url,
        "LEDGER_KEY_PATH": str(app_settings.ledger_key_path),
        "PHONE_KEY_PATH": str(app_settings.phone_key_path),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def invoke(label: str, command: str, content: bytes, *options: str) -> Run:
        path = tmp_path / f"{len(CASES)}.csv"
        path.write_bytes(content)
        before = row_counts(engine)
        result = CliRunner().invoke(cli.main, [*command.split(), str(path), *options])
        # A clean refusal is exit status 1 with a message, never an exception.
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            label,
            result.output,
            result.exception,
        )
        assert "Traceback" not in result.output, (label, result.output)
        CASES.append(f"{command}: {label} -> exit {result.exit_code}")
        return Run(result.exit_code, result.output, changed(before, row_counts(engine)))

    return invoke


@pytest.fixture(scope="module", autouse=True)
def report() -> object:
    yield
    REPORT["CSV imports"] = [f"{len(CASES)} broken-input cases, 0 crashes", *CASES]


def _refused(r: Run, *needles: str) -> None:
    """A file-level (or all-or-nothing) refusal: exit 1, a message, nothing stored."""
    assert r.code in (1, 2), r.output  # 2: click's usage error (e.g. an unknown --encoding)
    for needle in needles:
        assert needle.lower() in r.output.lower(), (needle, r.output)
    assert r.changed == {}, r.changed


def test_staff_import(run: Callable[..., Run], engine: Engine, users: World) -> None:
    row = f"{users.insurer_a},{users.branch_a}"
    ok = run("UTF-8", "staff import", (STAFF + f"{row},CS01,张三,agent\n").encode())
    assert ok.code == 0 and ok.changed["staff"][1] - ok.changed["staff"][0] == 1, ok
    ok = run("BOM", "staff import", ("\ufeff" + STAFF + f"{row},CS02,李四,teller\n").encode())
    assert ok.code == 0, ok.output
    ok = run("GBK", "staff import", (STAFF + f"{row},CS03,王五,adjuster\n").encode("gbk"))
    assert ok.code == 0, ok.output
    with engine.connect() as conn:
        names = dict(conn.execute(select(Staff.staff_no, Staff.name).where(
            Staff.staff_no.in_(["CS01", "CS02", "CS03"]))).all())  # fmt: skip
    assert names == {"CS01": "张三", "CS02": "李四", "CS03": "王五"}
    good = f"{row},CS09,赵六,agent\n"
    _refused(run("wrong header", "staff import", b"insurer,branch,staff,name,role\n"), "header")
    _refused(
        run("extra header column", "staff import", (STAFF[:-1] + ",phone,x\n" + good).encode()),
        "header",
    )
    _refused(run("missing column", "staff import", (STAFF + good + f"{row},CS10,钱七\n").encode()),
             "line 3", "expected 5 columns")  # fmt: skip
    _refused(run("extra column", "staff import", (STAFF + good + f"{row},CS10,钱七,agent,1,2\n")
                 .encode()), "line 3")  # fmt: skip
    _refused(run("empty file", "staff import", b""), "empty")
    _refused(run("blank lines only", "staff import", b"\n\n  \n"), "empty")
    _refused(run("open quote", "staff import", (STAFF + good + f'{row},"CS10,钱七,agent\n' + good)
                 .encode()), "line 3")  # fmt: skip
    _refused(run("field over 128 KiB", "staff import", (STAFF + good + f"{row},CS10,{LONG},agent\n")
                 .encode()), "line 3", "KiB")  # fmt: skip
    _refused(run("invisible name", "staff import",
                 (STAFF + good + f"{row},CS10,钱\u200b七,agent\n").encode()), "line 3")  # fmt: skip
    nul = (STAFF + good + f"{row},CS1\x000,钱七,agent\n").encode()
    _refused(run("NUL byte", "staff import", nul), "line 3")
    _refused(run("not text", "staff import", bytes(range(256)) * 4), "neither UTF-8 nor GB")


def _visit_rows(users: World) -> tuple[str, str]:
    day = (china_today() - timedelta(days=3)).isoformat()
    a = f"{users.insurer_a},new_policy,VP{{n}},1380000{{n:04d}},CSA1,{day},客户{{n}}\n"
    return a, day


@pytest.fixture
def agent(run: Callable[..., Run], users: World) -> None:
    data = STAFF + f"{users.insurer_a},{users.branch_a},CSA1,钱销售,agent\n"
    r = run("setup", "staff import", data.encode())
    assert r.code == 0, r.output


def test_visits_import(run: Callable[..., Run], users: World, agent: None) -> None:
    row, day = _visit_rows(users)

    def rows(*ns: int) -> str:
        return "".join(row.format(n=n) for n in ns)

    ok = run("UTF-8", "visits import", (VISITS + rows(1)).encode())
    assert ok.code == 0 and ok.changed["visit_tasks"], ok.output
    ok = run("BOM", "visits import", ("\ufeff" + VISITS + rows(2)).encode("utf-8"))
    assert ok.code == 0, ok.output
    ok = run("GBK", "visits import", (VISITS + rows(3)).encode("gbk"))
    assert ok.code == 0, ok.output
    ok = run(
        "GBK, declared", "visits import", (VISITS + rows(4)).encode("gbk"), "--encoding", "gbk"
    )
    assert ok.code == 0, ok.output
    _refused(run("GBK declared UTF-8", "visits import", (VISITS + rows(5, 6)).encode("gbk"),
                 "--encoding", "utf-8"), "line 2", "not utf-8")  # fmt: skip
    _refused(run("UTF-8 declared GBK", "visits import", (VISITS + rows(7, 8)).encode("utf-8"),
                 "--encoding", "gbk"), "UTF-8 text, not gbk")  # fmt: skip
    _refused(run("unknown encoding", "visits import", (VISITS + rows(9)).encode(),
                 "--encoding", "klingon"), "unknown encoding")  # fmt: skip
    _refused(run("wrong header", "visits import", (VISITS.replace("kind", "type") + rows(9))
                 .encode()), "header")  # fmt: skip
    _refused(run("empty file", "visits import", b""), "empty")
    # Per row: the bad rows are listed by line, the good ones stored, nothing else.
    bad = run(
        "bad rows among good",
        "visits import",
        (
            VISITS
            + rows(10)  # 2: good
            + f"{users.insurer_a},new_policy,VP11,13800000011,CSA1,{day}\n"  # 3: column missing
            + rows(12)[:-1]
            + ",extra\n"  # 4: a column too many
            + f'{users.insurer_a},new_policy,"VP13,13800000013,CSA1,{day},C13\n'  # 5: open quote
            + rows(14)  # 6: good (reading goes on after the open quote)
            + f"{users.insurer_a},new_policy,VP15,13800000015,CSA1,{day},{LONG}\n"  # 7: too long
            + f"{users.insurer_a},new_policy,VP1\x006,13800000016,CSA1,{day},C16\n"  # 8: NUL
        ).encode(),
    )
    assert bad.code == 1, bad.output
    for line in (3, 4, 5, 7, 8):
        assert f"line {line}:" in bad.output, (line, bad.output)
    assert "line 2:" not in bad.output and "line 6:" not in bad.output
    tasks = bad.changed["visit_tasks"]
    assert tasks[1] - tasks[0] == 2, bad.changed


def test_policies_import(run: Callable[..., Run], users: World) -> None:
    a = users.insurer_a
    ok = run("UTF-8 with BOM", "policies import", ("\ufeff" + POLICIES + f"{a},PP1,13800001001\n")
             .encode())  # fmt: skip
    assert ok.code == 0 and ok.changed["policies"], ok.output
    ok = run("GBK", "policies import", (POLICIES + f"{a},保单PP2,13800001002\n").encode("gbk"))
    assert ok.code == 1 and "line 2:" in ok.output, ok.output  # read right; not a policy number
    _refused(run("wrong header", "policies import", b"insurer,policy,phone\nTA,P,1\n"), "header")
    _refused(run("empty file", "policies import", b""), "empty")
    bad = run(
        "bad rows among good",
        "policies import",
        (
            POLICIES
            + f"{a},PP3,13800001003\n"  # 2: good
            + f"{a},PP4\n"  # 3: column missing
            + f"{a},PP5,13800001005,x\n"  # 4: extra column
            + f'{a},"PP6,13800001006\n'  # 5: open quote
            + f"{a},PP7,13800001007\n"  # 6: good
            + f"{a},{LONG},13800001008\n"  # 7: field too long
        ).encode(),
    )
    assert bad.code == 1, bad.output
    for line in (3, 4, 5, 7):
        assert f"line {line}:" in bad.output, (line, bad.output)
    rows = bad.changed["policies"]
    assert rows[1] - rows[0] == 2, bad.changed


def test_policies_in_force_import(run: Callable[..., Run], users: World) -> None:
    a = users.insurer_a
    ok = run("UTF-8", "policies-in-force import", (PIF + f"{a},2024-05,1000\n").encode("gbk"))
    assert ok.code == 0 and ok.changed["policies_in_force"], ok.output
    good = f"{a},2024-06,1000\n"
    _refused(run("wrong header", "policies-in-force import", b"insurer,month\nTA,2024-01\n"),
             "header")  # fmt: skip
    _refused(run("missing column", "policies-in-force import", (PIF + good + f"{a},2024-07\n")
                 .encode()), "Line 3")  # fmt: skip
    _refused(run("extra column", "policies-in-force import", (PIF + good + f"{a},2024-07,1,2\n")
                 .encode()), "Line 3")  # fmt: skip
    _refused(run("bad month", "policies-in-force import", (PIF + good + f"{a},2024-13,5\n")
                 .encode()), "line 3")  # fmt: skip
    _refused(run("open quote", "policies-in-force import", (PIF + good + f'{a},"2024-07,5\n')
                 .encode()), "line 3")  # fmt: skip
    _refused(run("empty file", "policies-in-force import", b""), "empty")
    many = PIF + "".join(f"{a},{2000 + n // 12}-{n % 12 + 1:02d},5\n" for n in range(10_001))
    _refused(run("10,001 rows", "policies-in-force import", many.encode()), "more than 10000 rows")


def test_files_above_the_size_limit_are_refused_unread(
    run: Callable[..., Run], users: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is 64 MiB; made small here so the test stays quick."""
    monkeypatch.setattr(cli, "MAX_CSV_BYTES", 256 * 1024)
    monkeypatch.setattr(Path, "read_bytes", _unread)  # refused on its size alone
    big = (STAFF + f"{users.insurer_a},{users.branch_a},CS99,张三,agent\n" * 10_000).encode()
    for command in ("staff import", "visits import", "policies import", "policies-in-force import"):
        _refused(run("above the size limit", command, big), "MiB", "split it")


def _unread(self: Path) -> bytes:
    raise AssertionError(f"{self} was read although it is above the limit")
