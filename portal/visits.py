"""Return-visit campaigns (回访): tasks from new policies and closed claims, the calls due
each day, call attempts, unreachable numbers handed back for correction, and the keypad
rating that completes a task. The scheduling rules are in portal.visit_schedule (pure).

The number to dial is kept in clear on the task (the call centre must dial it) and as a
keyed hash, which is what the fraud signals compare; pages show it masked.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from portal import policies, workdays
from portal.canonical import utc
from portal.csvfiles import Records
from portal.errors import BadRequest, Conflict, Invalid, NotFound, PortalError
from portal.models import Insurer, Rating, Staff, VisitAttempt, VisitTask
from portal.policies import ImportReport, RowError
from portal.ratings import EARLIEST_YEAR
from portal.visit_schedule import (
    KINDS,
    MAX_ATTEMPTS,
    china_day,
    cycle_from,
    first_cycle,
    in_call_window,
    is_call_day,
    window_for,
)

COLUMNS = ("insurer", "kind", "policy_no", "phone", "staff_no", "date", "customer")
STATUSES = ("open", "reached", "rated", "refused", "unreachable")
OUTCOMES = ("answered", "no_answer", "refused", "wrong_number")
FINISHED = ("reached", "rated", "refused")
MAX_AGE_DAYS = 90  # an older sale or claim is past any return visit
PAGE = 500  # due-list entries per page
CHUNK = 2000  # rows per INSERT and per IN (...) lookup
TASKS: Any = VisitTask.__table__
ATTEMPTS: Any = VisitAttempt.__table__
Progress = Callable[[int], None]
HISTORY = ("reached", "rated")  # an `answered` attempt may still be reported for these


def checked_time(value: datetime, field: str, now: datetime, skew: int = 120) -> datetime:
    """A reported time within the bounds ratings use (portal.ratings.validate), as UTC.

    The year is checked before the conversion: year 1 or 9999 with an offset would
    overflow in utc() (a 500), and a time in the future is refused, not stored."""
    if value.year < EARLIEST_YEAR:
        raise Invalid(
            "The time %(value)s is too far in the past.",
            field=field,
            code="time_too_old",
            value=value.isoformat(),
        )
    if value.year > now.year + 1 or utc(value) > now + timedelta(seconds=skew):
        raise Invalid(
            "The time %(value)s is in the future.",
            field=field,
            code="time_in_future",
            value=value.isoformat(),
        )
    return utc(value)


@dataclass(frozen=True)
class VisitIn:
    """One checked row: a task to create or update."""

    insurer_id: int
    kind: str
    policy_no: str
    phone: str  # E.164
    phone_hash: str
    customer_hash: str
    staff_id: int
    event_date: date

    @property
    def key(self) -> tuple[int, str, str]:
        return self.insurer_id, self.kind, self.policy_no


@dataclass
class VisitReport(ImportReport):
    """Like a policy import, plus unreachable tasks reopened by a corrected number."""

    reopened: int = 0

    def as_json(self) -> dict[str, Any]:
        return super().as_json() | {"reopened": self.reopened}


class _Lookup:
    """Insurer and staff codes to ids, loaded once per insurer (imports are large)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.insurers: dict[str, int] = {}
        self.staff: dict[int, dict[str, int]] = {}

    def insurer(self, code: str) -> int:
        code = code.strip().upper()
        if code not in self.insurers:
            row = self.conn.execute(select(Insurer.id).where(Insurer.code == code[:16])).first()
            if row is None:
                raise Invalid(
                    "Unknown insurer “%(value)s”.",
                    field="insurer",
                    code="unknown_insurer",
                    value=code[:40],
                )
            self.insurers[code] = int(row.id)
        return self.insurers[code]

    def staff_id(self, insurer_id: int, staff_no: str) -> int:
        if insurer_id not in self.staff:
            rows = self.conn.execute(
                select(Staff.staff_no, Staff.id).where(Staff.insurer_id == insurer_id, Staff.active)
            )
            self.staff[insurer_id] = {r.staff_no: int(r.id) for r in rows}
        found = self.staff[insurer_id].get(staff_no.strip())
        if found is None:
            raise Invalid(
                "This insurer has no staff member with number “%(staff_no)s”.",
                field="staff_no",
                code="unknown_staff",
                staff_no=staff_no.strip()[:40],
            )
        return found


def _kind(value: str) -> str:
    kind = value.strip()
    if kind not in KINDS:
        raise Invalid(
            "Unknown kind “%(value)s”: use new_policy or claim.",
            field="kind",
            code="invalid_kind",
            value=kind[:40],
        )
    return kind


def _event_date(value: str, today: date) -> date:
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise Invalid("Write the date as YYYY-MM-DD.", field="date", code="invalid_date") from None
    if day > today:
        raise Invalid(
            "The date %(value)s is in the future.",
            field="date",
            code="date_in_future",
            value=day.isoformat(),
        )
    if day < today - timedelta(days=MAX_AGE_DAYS):
        raise Invalid(
            "The date %(value)s is more than %(days)s days ago: too late for a return visit.",
            field="date",
            code="date_too_old",
            value=day.isoformat(),
            days=MAX_AGE_DAYS,
        )
    return day


def customer_hash(key: bytes, raw: str) -> str:
    """The insurer's customer id (number or ID card) as a keyed hash, never in clear."""
    value = "".join(unicodedata.normalize("NFKC", raw).split()).upper()
    if not value or len(value) > 64 or not value.isprintable():
        raise Invalid(
            "A customer id of 1 to 64 characters is required.",
            field="customer",
            code="invalid_customer",
        )
    return policies.phone_hash(key, "customer:" + value)


def check_row(
    lookup: _Lookup, insurer_id: int, item: Mapping[str, Any], key: bytes, today: date
) -> VisitIn:
    """One visit (a CSV record or an API object) checked and normalised, or Invalid."""
    phone = policies.normalise_phone(item["phone"])
    return VisitIn(
        insurer_id=insurer_id,
        kind=_kind(item["kind"]),
        policy_no=policies.normalise_policy_no(item["policy_no"]),
        phone=phone,
        phone_hash=policies.phone_hash(key, phone),
        customer_hash=customer_hash(key, item["customer"]),
        staff_id=lookup.staff_id(insurer_id, item["staff_no"]),
        event_date=_event_date(item["date"], today),
    )


def _check_csv_record(lookup: _Lookup, rec: list[str], key: bytes, today: date) -> VisitIn:
    if len(rec) != len(COLUMNS):
        raise Invalid(
            "Expected 7 columns: %(cols)s.", field="file", code="bad_row", cols=",".join(COLUMNS)
        )
    item = dict(zip(COLUMNS, rec, strict=True))
    insurer = item["insurer"].replace("\x00", "\\0")  # PostgreSQL refuses NUL parameters
    return check_row(lookup, lookup.insurer(insurer), item, key, today)


def csv_records(data: str) -> Iterator[tuple[int, list[str] | Invalid]]:
    """(first line, fields) of each non-empty record after the header, or (line, Invalid)
    for a record the csv module cannot read: a quote left open (reported from the line
    it opens on, not at the end of the file it swallowed) or a field over csv's limit
    (128 KiB). Reading goes on with the line after that record's first line."""
    return iter(Records(data, COLUMNS))


def check_csv(
    conn: Connection, data: str, key: bytes, today: date, progress: Progress | None = None
) -> tuple[list[tuple[int, VisitIn]], VisitReport]:
    """Check every row (reads only, so on SQLite no write lock is held meanwhile): the
    good rows with their line numbers, and a report listing the bad ones."""
    report, lookup = VisitReport(), _Lookup(conn)
    good: dict[tuple[int, str, str], tuple[int, VisitIn]] = {}
    done = 0
    for n, (line, rec) in enumerate(csv_records(data), start=1):
        try:
            if isinstance(rec, Invalid):
                raise rec
            visit = _check_csv_record(lookup, rec, key, today)
            if visit.key in good:
                raise Invalid(
                    "The same visit is already on line %(line)s.",
                    field="policy_no",
                    code="duplicate",
                    line=good[visit.key][0],
                )
            good[visit.key] = (line, visit)
        except PortalError as err:
            report.errors.append(RowError(line, err))
        if progress and n % 1000 == 0:
            progress(1000)
            done += 1000
    if progress:
        progress(max(data.count("\n") - done, 0))  # the rest; a bar clamps at its length
    return list(good.values()), report


def import_csv(
    conn: Connection,
    data: str,
    key: bytes,
    today: date,
    progress: Progress | None = None,
) -> VisitReport:
    """Import visit rows in the caller's transaction: good rows stored, bad rows reported
    with their line numbers. A row is checked completely before anything is written.
    (`portal visits import` checks on a read connection first, then applies.)"""
    rows, report = check_csv(conn, data, key, today, progress)
    return apply(conn, rows, today, report)


def apply(
    conn: Connection, rows: list[tuple[int, VisitIn]], today: date, report: VisitReport
) -> VisitReport:
    """Create new tasks in batches; update, reopen or refuse to change existing ones."""
    now = datetime.now(UTC)
    existing = _existing(conn, [v.key for _, v in rows])
    new: list[tuple[int, VisitIn]] = []
    for line, visit in rows:
        row = existing.get(visit.key)
        if row is None:
            new.append((line, visit))
            continue
        _update_row(conn, row, line, visit, today, now, report)
    lost = _insert_new(conn, new, now)
    report.added += len(new) - len(lost)
    if lost:  # a concurrent upload created them first: update those as existing ones
        existing = _existing(conn, [v.key for _, v in lost])
        for line, visit in lost:
            _update_row(conn, existing[visit.key], line, visit, today, now, report)
    report.errors.sort(key=lambda e: e.line)
    return report


def _update_row(
    conn: Connection,
    row: Any,
    line: int,
    visit: VisitIn,
    today: date,
    now: datetime,
    report: VisitReport,
) -> None:
    try:
        outcome = _update(conn, row, visit, today, now)
    except PortalError as err:
        report.errors.append(RowError(line, err))
        return
    setattr(report, outcome, getattr(report, outcome) + 1)


def _insert_new(
    conn: Connection, new: list[tuple[int, VisitIn]], now: datetime
) -> list[tuple[int, VisitIn]]:
    """Insert new tasks; returns those another transaction inserted first. On PostgreSQL
    two uploads of the same new policy can race (INSERT ... ON CONFLICT DO NOTHING: the
    loser gets them back instead of an IntegrityError); on SQLite the write lock taken
    by BEGIN IMMEDIATE before they were looked up makes that impossible."""
    if not new:
        return []
    if conn.dialect.name != "postgresql":  # BEGIN IMMEDIATE: nobody else inserted them
        for start in range(0, len(new), CHUNK):
            conn.execute(TASKS.insert(), [_new_task(v, now) for _, v in new[start : start + CHUNK]])
        return []
    from sqlalchemy.dialects.postgresql import insert

    stmt = (
        insert(TASKS)
        .on_conflict_do_nothing(index_elements=["insurer_id", "kind", "policy_no"])
        .returning(TASKS.c.insurer_id, TASKS.c.kind, TASKS.c.policy_no)
    )
    inserted: set[tuple[int, str, str]] = set()
    for start in range(0, len(new), CHUNK):
        batch = [_new_task(v, now) for _, v in new[start : start + CHUNK]]
        result = conn.execute(stmt, batch)
        inserted.update((r.insurer_id, r.kind, r.policy_no) for r in result)
    return [(line, v) for line, v in new if v.key not in inserted]


def _existing(
    conn: Connection, keys: list[tuple[int, str, str]]
) -> dict[tuple[int, str, str], Any]:
    by_insurer: dict[int, list[str]] = {}
    for insurer_id, _, policy_no in keys:
        by_insurer.setdefault(insurer_id, []).append(policy_no)
    found: dict[tuple[int, str, str], Any] = {}
    for insurer_id, numbers in by_insurer.items():
        unique = sorted(set(numbers))
        for start in range(0, len(unique), CHUNK):
            rows = conn.execute(
                select(VisitTask).where(
                    VisitTask.insurer_id == insurer_id,
                    VisitTask.policy_no.in_(unique[start : start + CHUNK]),
                )
            )
            found.update({(r.insurer_id, r.kind, r.policy_no): r for r in rows})
    return found


def _new_task(visit: VisitIn, now: datetime) -> dict[str, Any]:
    due_from, due_until = first_cycle(visit.kind, visit.event_date)
    return dict(
        insurer_id=visit.insurer_id,
        kind=visit.kind,
        policy_no=visit.policy_no,
        phone=visit.phone,
        phone_hash=visit.phone_hash,
        customer_hash=visit.customer_hash,
        staff_id=visit.staff_id,
        event_date=visit.event_date,
        cycle=1,
        due_from=due_from,
        due_until=due_until,
        attempts=0,
        status="open",
        created_at=now,
    )


def _update(conn: Connection, row: Any, visit: VisitIn, today: date, now: datetime) -> str:
    """added|updated|reopened|unchanged for a task that exists already."""
    same = (row.phone_hash, row.staff_id, row.event_date, row.customer_hash) == (
        visit.phone_hash,
        visit.staff_id,
        visit.event_date,
        visit.customer_hash,
    )
    if same:
        return "unchanged"
    if row.status in FINISHED:
        raise Invalid(
            "The return visit of this policy is finished (%(status)s); it can no longer change.",
            field="policy_no",
            code="visit_finished",
            status=row.status,
        )
    values: dict[str, Any] = dict(
        phone=visit.phone,
        phone_hash=visit.phone_hash,
        customer_hash=visit.customer_hash,
        staff_id=visit.staff_id,
        event_date=visit.event_date,
        updated_at=now,
    )
    if row.status == "unreachable" and row.phone_hash != visit.phone_hash:
        values |= _new_cycle(row, today)
        outcome = "reopened"
    else:
        outcome = "updated"
        if row.cycle == 1 and row.attempts == 0:
            values["due_from"], values["due_until"] = first_cycle(visit.kind, visit.event_date)
    conn.execute(TASKS.update().where(VisitTask.id == row.id).values(**values))
    return outcome


def _new_cycle(row: Any, today: date) -> dict[str, Any]:
    due_from, due_until = cycle_from(today)
    return dict(
        cycle=row.cycle + 1,
        attempts=0,
        last_attempt_on=None,
        status="open",
        due_from=due_from,
        due_until=due_until,
    )


def _task(conn: Connection, insurer_id: int, task_id: int) -> Any:
    row = conn.execute(
        select(VisitTask).where(VisitTask.id == task_id, VisitTask.insurer_id == insurer_id)
    ).first()
    if row is None:
        raise NotFound("There is no return visit %(id)s of your company.", id=task_id)
    return row


def correct_phone(
    conn: Connection, insurer_id: int, task_id: int, raw_phone: str, key: bytes, today: date
) -> Any:
    """The insurer's corrected number for an unreachable task: a new cycle starts today."""
    task = _task(conn, insurer_id, task_id)
    if task.status != "unreachable":
        raise Conflict(
            "Only an unreachable return visit gets a corrected number.",
            field="phone",
            code="not_unreachable",
        )
    phone = policies.normalise_phone(raw_phone)
    digest = policies.phone_hash(key, phone)
    if digest == task.phone_hash:
        raise Invalid(
            "This is the number that could not be reached; enter the corrected one.",
            field="phone",
            code="same_phone",
        )
    values = dict(phone=phone, phone_hash=digest, updated_at=datetime.now(UTC))
    conn.execute(
        TASKS.update().where(VisitTask.id == task.id).values(**values, **_new_cycle(task, today))
    )
    return _task(conn, insurer_id, task_id)


def parse_cursor(raw: str) -> tuple[date, int]:
    """A due-list cursor "YYYY-MM-DD.ID" (the last entry of the previous page)."""
    day, _, task_id = raw.partition(".")
    try:
        if not (task_id.isascii() and task_id.isdigit()) or len(task_id) > 18:
            raise ValueError
        return date.fromisoformat(day), int(task_id)
    except ValueError:
        raise BadRequest(
            "The cursor is not one this list gave out.", field="cursor", code="malformed_cursor"
        ) from None


def due(
    conn: Connection, insurer_id: int, day: date, cursor: tuple[date, int] | None = None
) -> dict[str, Any]:
    """The calls due on `day`: open tasks whose cycle has begun, not yet tried that day,
    with fewer than 3 attempts; each with the window its next attempt belongs in.

    Pages are keyset pages ordered by (due_until, id): `next_cursor` names the last
    entry, and the next page starts after it. Tasks tried (or closed) while a caller
    works through the pages leave the list without shifting the entries after them,
    which an OFFSET would do (it skipped calls)."""
    if not is_call_day(day):
        return {"date": day.isoformat(), "call_day": False, "visits": [], "next_cursor": None}
    stmt = (
        select(TASKS, Staff.staff_no)
        .join(Staff, Staff.id == VisitTask.staff_id)
        .where(
            VisitTask.insurer_id == insurer_id,
            VisitTask.status == "open",
            VisitTask.due_from <= day,
            VisitTask.attempts < MAX_ATTEMPTS,
            or_(VisitTask.last_attempt_on.is_(None), VisitTask.last_attempt_on != day),
        )
        .order_by(VisitTask.due_until, VisitTask.id)
        .limit(PAGE + 1)
    )
    if cursor is not None:
        after_day, after_id = cursor
        stmt = stmt.where(
            or_(
                VisitTask.due_until > after_day,
                and_(VisitTask.due_until == after_day, VisitTask.id > after_id),
            )
        )
    rows = conn.execute(stmt).all()
    visits = [_due_entry(r, day) for r in rows[:PAGE]]
    last = rows[PAGE - 1] if len(rows) > PAGE else None
    return {
        "date": day.isoformat(),
        "call_day": True,
        "visits": visits,
        "next_cursor": f"{last.due_until.isoformat()}.{last.id}" if last else None,
    }


def _due_entry(task: Any, day: date) -> dict[str, Any]:
    window = window_for(day, task.attempts)
    assert window is not None  # a call day has windows
    return {
        "task_id": task.id,
        "kind": task.kind,
        "stage": KINDS[task.kind],
        "policy_no": task.policy_no,
        "phone": task.phone,
        "staff_no": task.staff_no,
        "window": window.label,
        "attempt": task.attempts + 1,
        "cycle": task.cycle,
        "due_until": task.due_until.isoformat(),
        "overdue": day > task.due_until,
    }


def record_attempt(
    conn: Connection,
    insurer_id: int,
    task_id: int,
    outcome: str,
    at: datetime,
    source: str,
    skew: int = 120,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One call attempt. The same task and time again is a replay (same answer).

    One attempt per China day counts, in time order: a second one on a day the task was
    tried already, or one older than the last, is refused (the due list offers a task
    once a day, so 3 attempts take 3 days and 3 windows). An `answered` attempt reported
    after the task was reached or rated is kept as history and changes nothing."""
    now = now or datetime.now(UTC)
    if outcome not in OUTCOMES:
        raise Invalid(
            "Unknown outcome “%(value)s”: use answered, no_answer, refused or wrong_number.",
            field="outcome",
            code="invalid_outcome",
            value=outcome[:40],
        )
    moment = checked_time(at, "at", now, skew)
    for _ in range(2):  # once more when a concurrent attempt on the task won
        task = _task(conn, insurer_id, task_id)
        replay = _replay(conn, task, moment, outcome)
        if replay is not None:
            return replay
        _check_attempt(task, at, outcome)
        if _apply_attempt(conn, task, outcome, at, now):
            break
    else:
        raise Conflict(
            "Another attempt was recorded at the same moment; retry.", code="concurrent_attempt"
        )
    conn.execute(
        ATTEMPTS.insert().values(
            task_id=task.id,
            cycle=task.cycle,
            outcome=outcome,
            at=moment,
            source=source,
            recorded_at=now,
        )
    )
    return _state(_task(conn, insurer_id, task_id), replayed=False)


def _replay(conn: Connection, task: Any, moment: datetime, outcome: str) -> Any:
    prior = conn.execute(
        select(VisitAttempt.outcome).where(
            VisitAttempt.task_id == task.id, VisitAttempt.at == moment
        )
    ).first()
    if prior is None:
        return None
    if prior.outcome != outcome:
        raise Conflict(
            "An attempt at this time was already recorded with another outcome.",
            field="at",
            code="idempotency_conflict",
        )
    return _state(task, replayed=True)


def _apply_attempt(conn: Connection, task: Any, outcome: str, at: datetime, now: datetime) -> bool:
    """Count the attempt on its task; False when a concurrent attempt changed it first."""
    day = china_day(at)
    if task.status in HISTORY:  # an answered call after the fact: history only
        last = max(day, task.last_attempt_on) if task.last_attempt_on else day
        conn.execute(update(VisitTask).where(VisitTask.id == task.id).values(last_attempt_on=last))
        return True
    attempts = task.attempts + 1
    status = {
        "answered": "reached",
        "refused": "refused",
        "wrong_number": "unreachable",
        "no_answer": "unreachable" if attempts >= MAX_ATTEMPTS else "open",
    }[outcome]
    done = conn.execute(
        update(VisitTask)
        .where(
            VisitTask.id == task.id,
            VisitTask.status == "open",
            VisitTask.cycle == task.cycle,
            VisitTask.attempts == task.attempts,
        )
        .values(attempts=attempts, status=status, last_attempt_on=day, updated_at=now)
    )
    return done.rowcount == 1


def _check_attempt(task: Any, at: datetime, outcome: str) -> None:
    if not in_call_window(at):
        raise Invalid(
            "%(value)s is outside the call windows: customers are called only in them.",
            field="at",
            code="outside_call_window",
            value=at.isoformat(),
        )
    if china_day(at) < task.due_from:
        raise Invalid(
            "This return visit is due from %(day)s.",
            field="at",
            code="not_due_yet",
            day=task.due_from.isoformat(),
        )
    if task.status in HISTORY and outcome == "answered":
        return
    if task.status != "open":
        raise Conflict(
            "This return visit is no longer open (%(status)s).",
            field="task_id",
            code="visit_closed",
            status=task.status,
        )
    last = task.last_attempt_on
    if last is not None and china_day(at) == last:
        raise Invalid(
            "This customer was already tried on %(day)s: one attempt a day counts, "
            "try again on the next call day.",
            field="at",
            code="already_tried_today",
            day=last.isoformat(),
        )
    if last is not None and china_day(at) < last:
        raise Invalid(
            "An attempt on %(day)s was recorded already; an earlier one cannot follow it.",
            field="at",
            code="attempt_out_of_order",
            day=last.isoformat(),
        )


def _state(task: Any, replayed: bool) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "status": task.status,
        "attempts": task.attempts,
        "cycle": task.cycle,
        "replayed": replayed,
    }


def task_for_rating(
    conn: Connection,
    insurer_id: int,
    stage: str,
    policy_no: str,
    source: str,
    key: str,
    occurred_at: datetime | None = None,
) -> Any:
    """The task a return-visit keypad rating completes (with its staff_no), or Invalid.

    Only an open or reached task takes a rating, and only a call on or after the first
    due day of its current cycle (a cycle starts after the issue or closing date, or on
    the day a corrected number was entered): an unreachable, wrong-number or refused
    visit, or a "return visit" before the sale or claim it follows, rates nobody."""
    kind = next((k for k, s in KINDS.items() if s == stage), None)
    if kind is None:
        raise Invalid(
            "A return visit rates the sale (issuance) or a claim.",
            field="stage",
            code="invalid_stage",
        )
    task = conn.execute(
        select(
            VisitTask.id,
            VisitTask.phone,
            VisitTask.rating_id,
            VisitTask.status,
            VisitTask.due_from,
            Staff.staff_no,
        )
        .join(Staff, Staff.id == VisitTask.staff_id)
        .where(
            VisitTask.insurer_id == insurer_id,
            VisitTask.kind == kind,
            VisitTask.policy_no == policies.normalise_policy_no(policy_no),
        )
    ).first()
    if task is None:
        raise Invalid(
            "Policy %(policy_no)s has no %(kind)s return visit of this insurer.",
            field="policy_no",
            code="unknown_visit",
            policy_no=policy_no[:40],
            kind=kind,
        )
    used = conn.execute(
        select(Rating.id).where(Rating.source == source, Rating.idempotency_key == key)
    ).scalar()
    if used is not None and used != task.rating_id:
        raise Conflict(
            "This idempotency key was already used for a different rating.",
            field="call_id",
            code="idempotency_conflict",
        )
    if task.rating_id is not None and used is None:
        raise Conflict(
            "This return visit has already been rated.",
            field="policy_no",
            code="visit_already_rated",
        )
    if used is None and task.status not in ("open", "reached"):
        raise Conflict(
            "This return visit is no longer open (%(status)s).",
            field="policy_no",
            code="visit_closed",
            status=task.status,
        )
    # Other years are refused by record(); china_day() of year 1 would overflow.
    sane = occurred_at is not None and EARLIEST_YEAR <= occurred_at.year < 9999
    if used is None and sane and china_day(occurred_at) < task.due_from:
        raise Invalid(
            "This return visit is due from %(day)s.",
            field="occurred_at",
            code="not_due_yet",
            day=task.due_from.isoformat(),
        )
    return task


def complete(conn: Connection, task_id: int, rating: dict[str, Any]) -> None:
    """Inside the rating's transaction: the keypad score completes its task, once."""
    done = conn.execute(
        update(VisitTask)
        .where(
            VisitTask.id == task_id,
            VisitTask.rating_id.is_(None),
            VisitTask.status.in_(("open", "reached")),
        )
        .values(status="rated", rating_id=rating["id"], updated_at=rating["recorded_at"])
    )
    if done.rowcount != 1:  # a concurrent rating won: roll this one back
        raise Conflict(
            "This return visit has already been rated.",
            field="policy_no",
            code="visit_already_rated",
        )


def rows_from_api(
    conn: Connection, insurer_id: int, items: Iterable[Mapping[str, Any]], key: bytes, today: date
) -> list[tuple[int, VisitIn]]:
    """API rows: all valid or an Invalid naming the first bad one (visits[i].field)."""
    lookup, rows, seen = _Lookup(conn), [], set()
    for i, item in enumerate(items):
        try:
            visit = check_row(lookup, insurer_id, item, key, today)
            if visit.key in seen:
                raise Invalid(
                    "The same visit is twice in this request.", field="policy_no", code="duplicate"
                )
        except Invalid as err:
            err.field = f"visits[{i}].{err.field}"
            raise
        seen.add(visit.key)
        rows.append((i, visit))
    return rows


def counts(conn: Connection, insurer_id: int, today: date) -> dict[str, int]:
    """Campaign progress: tasks per status, and how many calls are due today."""
    by_status = dict(
        conn.execute(
            select(VisitTask.status, func.count())
            .where(VisitTask.insurer_id == insurer_id)
            .group_by(VisitTask.status)
        ).all()
    )
    out = {s: int(by_status.get(s, 0)) for s in STATUSES}
    out["total"] = sum(out.values())
    out["reached"] += out["rated"]  # every rated customer was reached
    out["due_today"] = _due_count(conn, insurer_id, today)
    return out


def _due_count(conn: Connection, insurer_id: int, day: date) -> int:
    if not is_call_day(day):
        return 0
    return int(
        conn.execute(
            select(func.count())
            .select_from(VisitTask)
            .where(
                VisitTask.insurer_id == insurer_id,
                VisitTask.status == "open",
                VisitTask.due_from <= day,
                VisitTask.attempts < MAX_ATTEMPTS,
                or_(VisitTask.last_attempt_on.is_(None), VisitTask.last_attempt_on != day),
            )
        ).scalar_one()
    )


def uncalendared_years(conn: Connection, insurer_id: int, today: date) -> list[int]:
    """Years from today to the last due day of an open visit that the statutory calendar
    does not cover yet: there the schedule falls back to Monday-Friday, so a holiday such
    as New Year's Day would get calls until `chinesecalendar` is updated."""
    last = conn.execute(
        select(func.max(VisitTask.due_until)).where(
            VisitTask.insurer_id == insurer_id, VisitTask.status == "open"
        )
    ).scalar()
    end = max(today.year, last.year if last else today.year)
    return [
        year
        for year in range(today.year, end + 1)
        if not (workdays.known(date(year, 1, 1)) and workdays.known(date(year, 12, 31)))
    ]
