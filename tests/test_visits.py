"""Return-visit campaigns with a fixed calendar: 2026 Mid-Autumn (25 Sep) and National
Day (1-7 Oct) are statutory holidays; Sun 20 Sep and Sat 10 Oct are make-up working days."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from portal import phone_reports, visits, workdays
from portal.channels import phone
from portal.config import Settings
from portal.credentials import add_client
from portal.errors import Conflict, Invalid
from portal.models import ApiClient, Insurer, VisitTask
from portal.secrets_files import ensure_key_file
from portal.stars import china_today
from tests.factories import CHINA, make_phone_staff

IMPORTED = date(2026, 9, 22)  # the day the campaign files are imported


@pytest.fixture
def campaign(engine: Engine, settings: Settings) -> dict[str, Any]:
    """A fresh insurer (counts are exact) with a sales agent, an adjuster and a client."""
    key = ensure_key_file(settings.phone_key_path)
    make_phone_staff(engine, key)
    code = "V" + uuid.uuid4().hex[:6].upper()
    from portal import directory

    with engine.begin() as conn:
        directory.add_insurer(conn, code, "回访测试保险")
        directory.add_branch(conn, code, "B1", "回访测试中支", "430200")
        directory.import_staff(
            conn,
            [
                directory.StaffRow(code, "B1", "AG1", "钱销售", "agent", "13700000009"),
                directory.StaffRow(code, "B1", "AD1", "孙理赔", "adjuster"),
            ],
            key,
        )
        client_id, _ = add_client(conn, code)
        client = conn.execute(select(ApiClient).where(ApiClient.client_id == client_id)).one()
        insurer_id = conn.execute(select(Insurer.id).where(Insurer.code == code)).scalar_one()
    return {"code": code, "key": key, "client": client, "insurer_id": insurer_id}


def import_rows(engine: Engine, c: dict[str, Any], *rows: str, today: date = IMPORTED) -> Any:
    data = "insurer,kind,policy_no,phone,staff_no,date,customer\n" + "".join(
        f"{c['code']},{r}\n" for r in rows
    )
    with engine.begin() as conn:
        return visits.import_csv(conn, data, c["key"], today)


def due(engine: Engine, c: dict[str, Any], day: date) -> dict[str, tuple[str, int]]:
    """policy_no -> (window, attempt) of the calls due that day."""
    with engine.connect() as conn:
        listing = visits.due(conn, c["insurer_id"], day)
    return {v["policy_no"]: (v["window"], v["attempt"]) for v in listing["visits"]}


def attempt(engine: Engine, c: dict[str, Any], policy: str, outcome: str, at: str) -> Any:
    moment = datetime.fromisoformat(at).replace(tzinfo=CHINA)
    with engine.begin() as conn:
        task_id = conn.execute(
            select(VisitTask.id).where(
                VisitTask.insurer_id == c["insurer_id"], VisitTask.policy_no == policy
            )
        ).scalar_one()
        return visits.record_attempt(
            conn, c["insurer_id"], task_id, outcome, moment, "test", now=moment
        )


def task(engine: Engine, c: dict[str, Any], policy: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(VisitTask).where(
                VisitTask.insurer_id == c["insurer_id"], VisitTask.policy_no == policy
            )
        ).one()


def test_due_lists_day_by_day_across_holidays_and_make_up_days(
    engine: Engine, campaign: dict[str, Any]
) -> None:
    c = campaign
    report = import_rows(
        engine,
        c,
        "new_policy,P-WEEKEND,13800000001,AG1,2026-09-18,CUST1",  # due from Sat 19 Sep
        "new_policy,P-HOLIDAY,13800000002,AG1,2026-09-22,CUST2",  # its week meets 25 Sep
        "claim,C-GOLDEN,13800000003,AD1,2026-09-10,CUST3",  # 14th day: Thu 24 Sep
    )
    assert report.added == 3 and not report.errors
    assert (task(engine, c, "P-HOLIDAY").due_from, task(engine, c, "P-HOLIDAY").due_until) == (
        date(2026, 9, 23),
        date(2026, 10, 9),  # 7 call days: 23, 24, 28, 29, 30 Sep, 8, 9 Oct
    )
    assert task(engine, c, "C-GOLDEN").due_until == date(2026, 10, 10)  # make-up Saturday
    expected = {
        date(2026, 9, 18): {},  # issued today: due from tomorrow
        date(2026, 9, 19): {"P-WEEKEND": ("10:30-12:30", 1)},  # ordinary Saturday
        date(2026, 9, 20): {"P-WEEKEND": ("09:30-12:00", 1)},  # make-up Sunday: weekday
        date(2026, 9, 23): {"P-WEEKEND": ("09:30-12:00", 1), "P-HOLIDAY": ("09:30-12:00", 1)},
        date(2026, 9, 25): {},  # Mid-Autumn Festival: nobody is called
        date(2026, 9, 27): {},  # a Sunday inside the holiday
        date(2026, 10, 3): {},  # National Day
    }
    for day, calls in expected.items():
        assert due(engine, c, day) == calls, day
    assert set(due(engine, c, date(2026, 9, 24))) == {"P-WEEKEND", "P-HOLIDAY", "C-GOLDEN"}
    assert due(engine, c, date(2026, 10, 10))["C-GOLDEN"] == ("09:30-12:00", 1)  # make-up Sat


def test_three_attempts_then_unreachable_and_a_corrected_number_reopens(
    engine: Engine, campaign: dict[str, Any]
) -> None:
    c = campaign
    import_rows(engine, c, "claim,C-TRY,13800000011,AD1,2026-09-10,CUST11")
    with pytest.raises(Invalid, match="call windows"):  # the Mid-Autumn holiday
        attempt(engine, c, "C-TRY", "no_answer", "2026-09-25T10:00:00")
    with pytest.raises(Invalid, match="call windows"):  # 22:00 on a working day
        attempt(engine, c, "C-TRY", "no_answer", "2026-09-24T22:00:00")
    assert attempt(engine, c, "C-TRY", "no_answer", "2026-09-24T10:00:00")["attempts"] == 1
    assert "C-TRY" not in due(engine, c, date(2026, 9, 24))  # tried today already
    assert due(engine, c, date(2026, 9, 28))["C-TRY"] == ("14:30-17:30", 2)  # another time
    attempt(engine, c, "C-TRY", "no_answer", "2026-09-28T15:00:00")
    assert due(engine, c, date(2026, 9, 29))["C-TRY"] == ("19:00-21:00", 3)
    state = attempt(engine, c, "C-TRY", "no_answer", "2026-09-29T19:30:00")
    assert state["status"] == "unreachable" and state["attempts"] == 3
    replay = attempt(engine, c, "C-TRY", "no_answer", "2026-09-29T19:30:00")
    assert replay["replayed"] and replay["attempts"] == 3  # the same report again
    assert "C-TRY" not in due(engine, c, date(2026, 9, 30))
    with pytest.raises(Conflict):  # a fourth attempt in the cycle
        attempt(engine, c, "C-TRY", "no_answer", "2026-09-30T10:00:00")
    with engine.connect() as conn:
        back = phone_reports.unreachable(conn, c["insurer_id"])
    assert [(t["policy_no"], t["phone"]) for t in back] == [("C-TRY", "138****0011")]
    task_id = back[0]["id"]
    with engine.begin() as conn, pytest.raises(Invalid, match="could not be reached"):
        visits.correct_phone(
            conn, c["insurer_id"], task_id, "13800000011", c["key"], date(2026, 9, 30)
        )
    with engine.begin() as conn:
        visits.correct_phone(
            conn, c["insurer_id"], task_id, "139 0000 0011", c["key"], date(2026, 9, 30)
        )
    assert due(engine, c, date(2026, 9, 30))["C-TRY"] == ("09:30-12:00", 1)  # cycle 2
    reopened = task(engine, c, "C-TRY")
    assert (reopened.cycle, reopened.phone, reopened.due_until) == (
        2,
        "+8613900000011",
        date(2026, 10, 13),  # 30 Sep and 8-13 Oct: the Golden Week does not count
    )
    assert attempt(engine, c, "C-TRY", "wrong_number", "2026-10-08T09:45:00")["status"] == (
        "unreachable"
    )  # a wrong number goes straight back to the insurer


def rate(engine: Engine, c: dict[str, Any], policy: str, stage: str, **over: Any) -> Any:
    keypad = phone.KeypadRating(
        call_id=over.pop("call_id", f"RV-{uuid.uuid4().hex[:10]}"),
        kind="return_visit",
        stage=stage,
        digits=over.pop("digits", "5"),
        scale=5,
        occurred_at=over.pop("occurred_at", datetime(2026, 9, 24, 10, 5, tzinfo=CHINA)),
        policy_no=policy,
        **over,
    )
    return phone.rate(engine, c["client"], keypad)


def test_a_keypad_rating_completes_its_visit(engine: Engine, campaign: dict[str, Any]) -> None:
    c = campaign
    import_rows(
        engine,
        c,
        "new_policy,P-RATED,13800000021,AG1,2026-09-22,CUST21",
        "claim,C-RATED,13800000022,AD1,2026-09-10,CUST22",
    )
    attempt(engine, c, "P-RATED", "answered", "2026-09-24T10:00:00")
    receipt = rate(engine, c, "P-RATED", "issuance", call_id="RV-1-" + c["code"])
    done = task(engine, c, "P-RATED")
    assert (done.status, done.rating_id) == ("rated", receipt.id)
    again = rate(engine, c, "P-RATED", "issuance", call_id="RV-1-" + c["code"])
    assert again.replayed and again.id == receipt.id
    with pytest.raises(Conflict, match="already been rated"):
        rate(engine, c, "P-RATED", "issuance")
    with pytest.raises(Invalid, match="not the one recorded"):
        rate(engine, c, "C-RATED", "claim", caller_phone="13800009999")
    with pytest.raises(Invalid, match="no claim return visit"):
        rate(engine, c, "P-RATED", "claim")
    rate(engine, c, "C-RATED", "claim", digits="2", caller_phone="138 0000 0022")
    assert task(engine, c, "C-RATED").status == "rated"
    assert set(due(engine, c, date(2026, 9, 28))) == set()
    with engine.connect() as conn:
        progress = visits.counts(conn, c["insurer_id"], date(2026, 9, 28))
        agents = {a["staff_no"]: a for a in phone_reports.visits_by_agent(conn, c["insurer_id"])}
    assert (progress["rated"], progress["reached"], progress["due_today"]) == (2, 2, 0)
    assert (agents["AG1"]["rated"], agents["AG1"]["mean"]) == (1, 100.0)  # the sale: 5 of 5
    assert (agents["AD1"]["rated"], agents["AD1"]["mean"]) == (1, 25.0)  # the claim: 2 of 5


def test_csv_rows_checked_one_by_one(engine: Engine, campaign: dict[str, Any]) -> None:
    c = campaign
    report = import_rows(
        engine,
        c,
        "new_policy,P-OK1,13800000031,AG1,2026-09-17,CUST31",
        "new_policy,P-BAD1,12345,AG1,2026-09-17,CUST32",
        "new_policy,P-BAD2,13800000033,NOBODY,2026-09-17,CUST33",
        "renewal,P-BAD3,13800000034,AG1,2026-09-17,CUST34",
        "claim,C-BAD4,13800000035,AD1,2026-09-30,CUST35",
        "new_policy,P-OK1,13800000036,AG1,2026-09-17,CUST36",
        "claim,C-OK2,+86 138 0000 0037,AD1,2026-09-01,CUST37",
    )
    assert report.added == 2
    assert [(e.line, e.error.code) for e in report.errors] == [
        (3, "invalid_phone"),
        (4, "unknown_staff"),
        (5, "invalid_kind"),
        (6, "date_in_future"),
        (7, "duplicate"),
    ]
    assert task(engine, c, "C-OK2").phone == "+8613800000037"
    with engine.connect() as conn:
        count = conn.execute(
            select(VisitTask.policy_no).where(VisitTask.insurer_id == c["insurer_id"])
        ).all()
    assert sorted(r.policy_no for r in count) == ["C-OK2", "P-OK1"]
    again = import_rows(engine, c, "new_policy,P-OK1,13800000031,AG1,2026-09-17,CUST31")
    assert again.unchanged == 1 and again.added == 0


def test_fraud_signals(engine: Engine, campaign: dict[str, Any]) -> None:
    c = campaign
    import_rows(
        engine,
        c,
        "new_policy,P-SELF,137 0000 0009,AG1,2026-09-17,CUST41",  # the agent's own phone
        "new_policy,P-S1,13800000050,AG1,2026-09-17,CUST51",
        "new_policy,P-S2,13800000050,AG1,2026-09-17,CUST52",
        "new_policy,P-S3,13800000050,AG1,2026-09-17,CUST53",
        "new_policy,P-FAM1,13800000060,AG1,2026-09-17,CUST61",  # one customer, 2 policies
        "new_policy,P-FAM2,13800000060,AG1,2026-09-17,CUST61",
    )
    with engine.connect() as conn:
        own = phone_reports.agent_phone_signals(conn, c["insurer_id"])
        shared = phone_reports.shared_phone_signals(conn, c["insurer_id"])
        counts = phone_reports.signal_counts(conn, [c["insurer_id"], -1])
    assert counts == {c["insurer_id"]: len(own) + len(shared), -1: 0}  # the ranking's batch
    assert [(s["policy_no"], s["owner_no"]) for s in own] == [("P-SELF", "AG1")]
    assert [(s["phone"], s["customers"], s["agents"]) for s in shared] == [
        ("138****0050", 3, [("AG1", 3)])
    ]


def task_id_of(engine: Engine, c: dict[str, Any], policy: str) -> int:
    return int(task(engine, c, policy).id)


def test_due_list_pages_do_not_skip_calls_tried_meanwhile(
    engine: Engine, campaign: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call centre works through page 1, then asks for page 2: the calls it tried in
    between leave the list, and with OFFSET pages the next ones were skipped."""
    c = campaign
    import_rows(
        engine,
        c,
        *(f"claim,C-PAGE{i},1380000010{i},AD1,2026-09-10,CUSTP{i}" for i in range(4)),
    )
    monkeypatch.setattr(visits, "PAGE", 2)
    day = date(2026, 9, 24)
    with engine.connect() as conn:
        first = visits.due(conn, c["insurer_id"], day)
    assert [v["policy_no"] for v in first["visits"]] == ["C-PAGE0", "C-PAGE1"]
    for v in first["visits"]:
        attempt(engine, c, v["policy_no"], "no_answer", "2026-09-24T10:00:00")
    with engine.connect() as conn:
        second = visits.due(conn, c["insurer_id"], day, visits.parse_cursor(first["next_cursor"]))
    assert [v["policy_no"] for v in second["visits"]] == ["C-PAGE2", "C-PAGE3"]
    assert second["next_cursor"] is None


def test_one_attempt_a_day_and_in_time_order(engine: Engine, campaign: dict[str, Any]) -> None:
    """Three no_answer reports in one morning would make a customer unreachable without
    the three windows on three days the due list offers."""
    c = campaign
    import_rows(engine, c, "claim,C-DAY,13800000081,AD1,2026-09-10,CUST81")
    attempt(engine, c, "C-DAY", "no_answer", "2026-09-24T10:00:00")
    for later in ("2026-09-24T10:05:00", "2026-09-24T15:00:00"):
        with pytest.raises(Invalid, match="already tried") as err:
            attempt(engine, c, "C-DAY", "no_answer", later)
        assert (err.value.code, err.value.status) == ("already_tried_today", 422)
    attempt(engine, c, "C-DAY", "no_answer", "2026-09-29T15:00:00")
    with pytest.raises(Invalid) as err:  # a late report of an earlier day
        attempt(engine, c, "C-DAY", "no_answer", "2026-09-28T15:00:00")
    assert err.value.code == "attempt_out_of_order"
    done = task(engine, c, "C-DAY")
    assert (done.attempts, done.status, done.last_attempt_on) == (2, "open", date(2026, 9, 29))


def test_an_answered_attempt_after_the_rating_is_kept_as_history(
    engine: Engine, campaign: dict[str, Any]
) -> None:
    c = campaign
    import_rows(engine, c, "claim,C-LATE,13800000082,AD1,2026-09-10,CUST82")
    rate(engine, c, "C-LATE", "claim")  # the keypad score arrives first
    state = attempt(engine, c, "C-LATE", "answered", "2026-09-24T10:00:00")
    assert (state["status"], state["replayed"]) == ("rated", False)
    assert attempt(engine, c, "C-LATE", "answered", "2026-09-24T10:00:00")["replayed"]
    with pytest.raises(Conflict, match="no longer open"):
        attempt(engine, c, "C-LATE", "no_answer", "2026-09-28T10:00:00")
    assert task(engine, c, "C-LATE").status == "rated"


def test_a_rating_completes_only_an_open_or_reached_visit_after_it_is_due(
    engine: Engine, campaign: dict[str, Any]
) -> None:
    c = campaign
    import_rows(
        engine,
        c,
        "claim,C-GONE,13800000083,AD1,2026-09-10,CUST83",
        "claim,C-NO,13800000084,AD1,2026-09-10,CUST84",
        "claim,C-EARLY,13800000085,AD1,2026-09-10,CUST85",  # due from 24 Sep
    )
    attempt(engine, c, "C-GONE", "wrong_number", "2026-09-24T10:00:00")
    attempt(engine, c, "C-NO", "refused", "2026-09-24T10:00:00")
    for policy, status in (("C-GONE", "unreachable"), ("C-NO", "refused")):
        with pytest.raises(Conflict) as err:
            rate(engine, c, policy, "claim")
        assert (err.value.code, err.value.params["status"]) == ("visit_closed", status)
        assert task(engine, c, policy).rating_id is None
    early = datetime(2026, 9, 23, 10, 0, tzinfo=CHINA)
    with pytest.raises(Invalid) as err:
        rate(engine, c, "C-EARLY", "claim", occurred_at=early)
    assert (err.value.code, err.value.field) == ("not_due_yet", "occurred_at")
    assert task(engine, c, "C-EARLY").status == "open"


def test_times_are_bounded_before_they_are_converted(
    engine: Engine, campaign: dict[str, Any]
) -> None:
    """Year 1 or 9999 with an offset overflowed in utc() (500); a future time was stored."""
    c = campaign
    import_rows(engine, c, "claim,C-TIME,13800000086,AD1,2026-09-10,CUST86")
    tid = task_id_of(engine, c, "C-TIME")
    east, west = timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))
    now = datetime(2026, 9, 24, 3, 0, tzinfo=UTC)
    cases = [
        (datetime(1, 1, 1, 0, 30, tzinfo=east), "time_too_old"),
        (datetime(9999, 12, 31, 23, 0, tzinfo=west), "time_in_future"),
        (datetime(2026, 9, 24, 14, 45, tzinfo=east), "time_in_future"),  # later today
    ]
    for moment, code in cases:
        with engine.begin() as conn, pytest.raises(Invalid) as err:
            visits.record_attempt(conn, c["insurer_id"], tid, "no_answer", moment, "t", now=now)
        assert (err.value.code, err.value.field) == (code, "at")
    assert task(engine, c, "C-TIME").attempts == 0
    soon = datetime.now(UTC) + timedelta(hours=1)
    for moment, code in [*cases[:2], (soon, "time_in_future")]:
        call = phone.CallReport(f"CT-{uuid.uuid4().hex[:8]}", "AG1", True, False, moment)
        with pytest.raises(Invalid) as err:
            phone.report_call(engine, c["client"], call)
        assert (err.value.code, err.value.field) == (code, "ended_at")


def test_keypad_digits_are_ascii_keys_only() -> None:
    for bad in ("³", "４", "٤", "0", "6", "44", ""):
        with pytest.raises(Invalid):
            phone._value(bad, 5)
    with pytest.raises(Invalid):
        phone._value("4", 3)
    assert [phone._value(d, 5) for d in "12345"] == [1, 2, 3, 4, 5]


def test_a_return_visit_call_id_resent_as_hotline_is_a_conflict(
    engine: Engine, campaign: dict[str, Any]
) -> None:
    c = campaign
    import_rows(
        engine,
        c,
        "new_policy,P-KIND,13800000087,AG1,2026-09-22,CUST87",
        "new_policy,P-KIND2,13800000097,AG1,2026-09-22,CUST97",
    )
    call_id = "RV-KIND-" + c["code"]
    rate(engine, c, "P-KIND", "issuance", call_id=call_id)
    hotline = phone.KeypadRating(
        call_id=call_id,
        kind="hotline",
        stage="issuance",
        digits="5",
        scale=5,
        occurred_at=datetime(2026, 9, 24, 10, 5, tzinfo=CHINA),
        agent_no="AG1",  # the same agent, stage and score as the visit's rating
    )
    with pytest.raises(Conflict) as err:
        phone.rate(engine, c["client"], hotline)
    assert (err.value.code, err.value.field) == ("idempotency_conflict", "call_id")
    with pytest.raises(Invalid) as err:
        rate(engine, c, "P-KIND2", "issuance", caller_phone="12345")
    assert err.value.field == "caller_phone"


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except Exception as err:  # noqa: BLE001 - handed to the test
            out["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_the_same_attempt_twice_at_once_is_one_attempt_and_a_replay(
    engine: Engine, campaign: dict[str, Any]
) -> None:
    c = campaign
    import_rows(engine, c, "claim,C-RACE,13800000088,AD1,2026-09-10,CUST88")
    tid, moment = task_id_of(engine, c, "C-RACE"), datetime(2026, 9, 24, 10, 0, tzinfo=CHINA)

    def record(conn: Any) -> Any:
        return visits.record_attempt(
            conn, c["insurer_id"], tid, "no_answer", moment, "t", now=moment
        )

    def second() -> Any:
        with engine.begin() as conn:
            return record(conn)

    with engine.begin() as conn:
        assert record(conn)["replayed"] is False
        thread, out = _in_thread(second)
        thread.join(0.5)  # the second waits for the first's row (or write) lock
    thread.join(30)
    assert "error" not in out, out
    assert out["value"]["replayed"] is True and out["value"]["attempts"] == 1
    assert task(engine, c, "C-RACE").attempts == 1


def test_two_uploads_of_the_same_new_policy_at_once(
    engine: Engine, campaign: dict[str, Any]
) -> None:
    c = campaign
    item = {
        "kind": "claim",
        "policy_no": "C-TWICE",
        "phone": "13800000089",
        "staff_no": "AD1",
        "date": "2026-09-10",
        "customer": "CUST89",
    }

    def upload(conn: Any) -> Any:
        rows = visits.rows_from_api(conn, c["insurer_id"], [item], c["key"], IMPORTED)
        return visits.apply(conn, rows, IMPORTED, visits.VisitReport())

    def second() -> Any:
        with engine.begin() as conn:
            return upload(conn)

    with engine.begin() as conn:
        assert upload(conn).added == 1
        thread, out = _in_thread(second)
        thread.join(0.5)  # waits on the unique index (PostgreSQL) or the write lock
    thread.join(30)
    assert "error" not in out, out
    assert (out["value"].added, out["value"].unchanged, out["value"].errors) == (0, 1, [])


def test_survey_window_starts_at_china_midnight(engine: Engine, campaign: dict[str, Any]) -> None:
    """03:00 China time on the first day of the window is 19:00 UTC the day before: on
    SQLite a China-time bound compared as naive text left such calls out."""
    c = campaign
    today = china_today()
    first = today - timedelta(days=phone_reports.DAYS - 1)
    for hour, day in ((3, first), (23, first - timedelta(days=1))):
        ended = datetime.combine(day, time(hour, 0), CHINA)
        phone.report_call(
            engine,
            c["client"],
            phone.CallReport(f"CW-{uuid.uuid4().hex[:8]}", "AG1", True, False, ended),
        )
    with engine.connect() as conn:
        agents = phone_reports.survey_by_agent(conn, c["insurer_id"], today)
    assert [(a["staff_no"], a["calls"]) for a in agents] == [("AG1", 1)]


@pytest.mark.parametrize("table", ["visit_attempts", "phone_calls"])
@pytest.mark.parametrize(
    "sql", ["UPDATE {t} SET recorded_at = recorded_at WHERE id = {id}", "DELETE FROM {t}"]
)
def test_attempts_and_calls_are_append_only(
    owner_engine: Engine, engine: Engine, campaign: dict[str, Any], table: str, sql: str
) -> None:
    """Even the owner cannot change or delete them (triggers of migration 0005)."""
    c = campaign
    import_rows(engine, c, "claim,C-KEEP,13800000090,AD1,2026-09-10,CUST90")
    attempt(engine, c, "C-KEEP", "no_answer", "2026-09-24T10:00:00")
    phone.report_call(engine, c["client"], phone.CallReport("CK-" + c["code"], "AG1", True, False))
    with owner_engine.connect() as conn:
        row_id = conn.execute(text(f"SELECT max(id) FROM {table}")).scalar_one()
    raw = owner_engine.raw_connection()
    try:
        with pytest.raises(Exception, match=r"(?i)append-only"):
            raw.cursor().execute(sql.format(t=table, id=row_id))
        raw.rollback()
        if owner_engine.dialect.name == "postgresql":
            with pytest.raises(Exception, match=r"(?i)append-only"):
                raw.cursor().execute(f"TRUNCATE {table} CASCADE")
            raw.rollback()
    finally:
        raw.close()
    with owner_engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table} WHERE id = {row_id}")).scalar()


def test_csv_errors_name_the_line_a_record_starts_on(
    engine: Engine, campaign: dict[str, Any]
) -> None:
    """An open quote swallowed the rest of the file and was reported at its end; a field
    over csv's 128 KiB limit raised csv.Error out of the import."""
    c = campaign
    huge = "x" * (200 * 1024)
    report = import_rows(
        engine,
        c,
        "new_policy,P-Q1,13800000101,AG1,2026-09-17,CUST101",  # line 2
        'new_policy,"P-Q2,13800000102,AG1,2026-09-17,CUST102',  # line 3: quote left open
        "new_policy,P-Q3,13800000103,AG1,2026-09-17,CUST103",
        f"new_policy,P-Q4,13800000104,AG1,2026-09-17,{huge}",  # line 5
        'new_policy,P-Q5,"138 0000\n0105",AG1,2026-09-17,CUST105',  # lines 6-7: fine
        "new_policy,P-Q6,13800000106,AG1,2026-09-17,CUST106",  # line 8
    )
    assert [(e.line, e.error.code) for e in report.errors] == [
        (3, "unterminated_quote"),
        (5, "field_too_long"),
        (6, "invalid_phone"),  # a newline inside a number: the record's first line
    ]
    assert "from line 3" in str(report.errors[0].error)
    assert report.added == 3  # P-Q1, P-Q3 and P-Q6: reading went on after line 3
    assert task(engine, c, "P-Q6").phone == "+8613800000106"


def test_gbk_files_are_read(tmp_path: Any) -> None:
    """Excel in China saves CSV as GBK; such files were refused whole."""
    from portal.cli import read_csv_file

    text_ = "insurer,kind,policy_no,phone,staff_no,date,customer\nTA,claim,理赔1,1,2,3,客户\n"
    for encoding in ("gbk", "gb18030", "utf-8-sig", "utf-8"):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(text_.encode(encoding))
        assert read_csv_file(path) == text_, encoding
    assert read_csv_file(tmp_path / "gbk.csv", "gbk") == text_


@pytest.mark.sqlite_only  # PostgreSQL writers do not share one lock
def test_the_cli_checks_rows_without_holding_the_write_lock(
    scratch_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Parsing and hashing 100k rows took 17 s inside the write transaction on SQLite:
    every rating waited for it. Rows are now checked on a read connection."""
    import sqlite3

    from click.testing import CliRunner

    from portal.cli import main

    monkeypatch.setenv("DATABASE_URL", scratch_settings.database_url)
    monkeypatch.setenv("LEDGER_KEY_PATH", str(scratch_settings.ledger_key_path))
    monkeypatch.setenv("PHONE_KEY_PATH", str(scratch_settings.phone_key_path))
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, list(args), catch_exceptions=False)

    assert run("init", "--json").exit_code == 0
    run("insurer", "add", "VL", "锁测试保险")
    run("branch", "add", "VL", "VL-1", "锁测试中支", "430200")
    staff = tmp_path / "staff.csv"
    staff.write_text("insurer,branch,staff_no,name,role\nVL,VL-1,AG1,钱销售,agent\n")
    assert run("staff", "import", str(staff)).exit_code == 0
    day = (china_today() - timedelta(days=2)).isoformat()
    rows = tmp_path / "visits.csv"
    rows.write_text(
        "insurer,kind,policy_no,phone,staff_no,date,customer\n"
        f"VL,new_policy,P1,13800000001,AG1,{day},C1\n"
    )
    path = scratch_settings.database_url.removeprefix("sqlite:///")
    writable: list[bool] = []
    real = visits.check_row

    def check_row(*args: Any) -> Any:  # while the CLI checks a row: can others write?
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            writable.append(True)
        except sqlite3.OperationalError:
            writable.append(False)
        finally:
            other.close()
        return real(*args)

    monkeypatch.setattr(visits, "check_row", check_row)
    result = run("visits", "import", str(rows), "--json")
    assert result.exit_code == 0, result.output
    assert writable == [True]


def test_years_without_statutory_data_are_named(engine: Engine, campaign: dict[str, Any]) -> None:
    """chinesecalendar 1.11.0 stops at 2026: a visit due in January 2027 would be called
    on New Year's Day (Monday-Friday fallback) unless someone is told."""
    c = campaign
    late = date(2026, 12, 28)
    import_rows(engine, c, "new_policy,P-NY,13800000111,AG1,2026-12-27,CUST111", today=late)
    assert task(engine, c, "P-NY").due_until.year == 2027
    with engine.connect() as conn:
        years = visits.uncalendared_years(conn, c["insurer_id"], late)
        assert visits.uncalendared_years(conn, c["insurer_id"], date(2026, 9, 1)) == (
            [] if workdays.known(date(2027, 1, 1)) else [2027]
        )
    assert years == ([] if workdays.known(date(2027, 1, 1)) else [2027])
