"""Counter channel (柜面): evaluator devices, service sessions and their one rating.

A device belongs to one branch. The teller opens a service session; the customer's
button press rates it, exactly once, through the one write path
(portal.ratings.record_many, in the request's write transaction). Misuse signals
(a rating seconds after opening, bursts on one device) are flagged, never dropped.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from portal import audit, rollups, stars
from portal.canonical import parts_fingerprint, utc
from portal.credentials import device_for_token
from portal.db import reading
from portal.errors import Conflict, Invalid, NotFound
from portal.ids import new_id
from portal.models import (
    STAGES,
    Branch,
    CounterFlag,
    CounterSession,
    Device,
    Insurer,
    Rating,
    RollupCounterDaily,
    Staff,
)
from portal.prepared import Prepared
from portal.ratings import (
    RatingIn,
    Receipt,
    Subjects,
    check_idempotency_key,
    day_of,
    record_many,
)

SESSION_TTL = timedelta(hours=2)
OFFLINE_GRACE = timedelta(hours=24)  # how late a press queued offline may still arrive
LEVELS = {"satisfied": 1, "basic": 2, "dissatisfied": 3}  # the 3-level scale's values
FAST_SECONDS = 10  # a real service takes minutes; a rating this soon is suspicious
BURST_WINDOW = timedelta(seconds=60)
BURST_COUNT = 4  # this many ratings within BURST_WINDOW on one device is a burst
SESSIONS: Any = CounterSession.__table__
COMPLETION: Any = RollupCounterDaily.__table__
COMPLETION_KEYS = ("day", "staff_id", "branch_id")


@dataclass(frozen=True)
class SessionOpened:
    session_id: str
    staff_no: str
    staff_name: str
    stars: stars.StarLevel
    expires_at: datetime
    replayed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "expires_at": self.expires_at.isoformat(),
            "staff": {
                "name": self.staff_name,
                "staff_no": self.staff_no,
                "stars": self.stars.stars,
                "new": self.stars.is_new,
            },
        }


def authenticate(engine: Engine, token: str) -> Any:
    """The device behind a bearer token (401 if unknown or revoked); notes it was seen."""
    with reading(engine) as conn:
        device = device_for_token(conn, token)
    if _unseen(device):
        with engine.begin() as conn:
            _seen(conn, device)
    return device


def _unseen(device: Any) -> bool:
    """Not seen for a minute: last_seen_at is worth a write."""
    last = device.last_seen_at
    return last is None or datetime.now(UTC) - utc(last) > timedelta(minutes=1)


def _seen(conn: Connection, device: Any) -> None:
    conn.execute(_SEEN, {"device": device.id, "now": datetime.now(UTC)})


_SEEN = update(Device).where(Device.id == bindparam("device")).values(last_seen_at=bindparam("now"))


def _staff(conn: Connection, insurer_id: int, staff_no: str) -> Any:
    row = conn.execute(
        select(Staff.id, Staff.staff_no, Staff.name).where(
            Staff.insurer_id == insurer_id, Staff.staff_no == staff_no, Staff.active
        )
    ).first()
    if row is None:
        raise Invalid(
            "This insurer has no staff member with number “%(staff_no)s”.",
            field="staff_no",
            code="unknown_staff",
            staff_no=staff_no[:40],
        )
    return row


def _opened(conn: Connection, session: Any, replayed: bool) -> SessionOpened:
    staff = conn.execute(
        select(Staff.staff_no, Staff.name).where(Staff.id == session.staff_id)
    ).one()
    level = stars.staff_stars(conn, [session.staff_id])[session.staff_id]
    return SessionOpened(
        session.id, staff.staff_no, staff.name, level, utc(session.expires_at), replayed
    )


def open_session(
    engine: Engine, device: Any, staff_no: str, stage: str, ticket: str | None, key: str
) -> SessionOpened:
    """The teller starts serving a customer. Same key and body again: the same session."""
    try:
        return _open_session(engine, device, staff_no, stage, ticket, key)
    except IntegrityError:
        # A retry raced the original request; it committed first, so answer as a replay.
        return _open_session(engine, device, staff_no, stage, ticket, key)


def _open_session(
    engine: Engine, device: Any, staff_no: str, stage: str, ticket: str | None, key: str
) -> SessionOpened:
    if stage not in STAGES:
        raise Invalid(
            "Unknown stage “%(value)s”: use issuance, renewal or claim.",
            field="stage",
            code="invalid_stage",
            value=stage[:40],
        )
    if ticket is not None and (len(ticket) > 16 or not ticket.isprintable()):
        raise Invalid(
            "A queue ticket has at most 16 printable characters.",
            field="ticket",
            code="invalid_ticket",
        )
    fp = parts_fingerprint(staff_no, stage, ticket)
    with engine.begin() as conn:
        existing = conn.execute(
            select(CounterSession).where(
                CounterSession.device_id == device.id,
                CounterSession.idempotency_key == check_idempotency_key(key),
            )
        ).first()
        if existing is not None:
            if existing.fingerprint != fp:
                raise Conflict(
                    "This idempotency key was already used for a different session.",
                    field="idempotency_key",
                    code="idempotency_conflict",
                )
            return _opened(conn, existing, replayed=True)
        staff = _staff(conn, device.insurer_id, staff_no)
        now = datetime.now(UTC)
        row = dict(
            id=new_id(),
            device_id=device.id,
            insurer_id=device.insurer_id,
            branch_id=device.branch_id,
            staff_id=staff.id,
            stage=stage,
            ticket=ticket,
            idempotency_key=key,
            fingerprint=fp,
            opened_at=now,
            expires_at=now + SESSION_TTL,
        )
        conn.execute(SESSIONS.insert(), [row])
        _count(conn, row, opened=1)
        return _opened(conn, select_session(conn, row["id"]), replayed=False)


def select_session(conn: Connection, session_id: str) -> Any:
    return conn.execute(select(CounterSession).where(CounterSession.id == session_id)).first()


def _count(conn: Connection, session: dict[str, Any], opened: int = 0, rated: int = 0) -> None:
    """Completion rollup, by the day the session was opened (China time)."""
    row = {
        "day": day_of(session["opened_at"]),
        "staff_id": session["staff_id"],
        "insurer_id": session["insurer_id"],
        "branch_id": session["branch_id"],
        "opened": opened,
        "rated": rated,
    }
    rollups.upsert_add(conn, COMPLETION, COMPLETION_KEYS, ("opened", "rated"), [row])


# The press's reads, built once, in one query: the session with the codes record()
# takes, whether its staff member is still active, the key of the rating it already
# has, and the rating this device's idempotency key already stands for, if any.
_KEY_USED = (
    select(Rating.id)
    .where(Rating.source == bindparam("source"), Rating.idempotency_key == bindparam("key"))
    .limit(1)
)
_PRESS = Prepared(
    select(
        *SESSIONS.c,
        Insurer.code.label("insurer_code"),
        Branch.code.label("branch_code"),
        Staff.staff_no,
        Staff.branch_id.label("staff_branch_id"),
        Staff.active.label("staff_active"),
        Rating.idempotency_key.label("rated_key"),
        _KEY_USED.scalar_subquery().label("key_rating_id"),
    )
    .select_from(SESSIONS)
    .join(Insurer, Insurer.id == SESSIONS.c.insurer_id)
    .join(Branch, Branch.id == SESSIONS.c.branch_id)
    .join(Staff, Staff.id == SESSIONS.c.staff_id)
    .outerjoin(Rating, Rating.id == SESSIONS.c.rating_id)
    .where(SESSIONS.c.id == bindparam("sid"))
)
_MARK_RATED = Prepared(
    update(SESSIONS)
    .where(SESSIONS.c.id == bindparam("sid"), SESSIONS.c.rating_id.is_(None))
    .values(rating_id=bindparam("rid"), rated_at=bindparam("now"), pressed_at=bindparam("at"))
)
_RECENT_PRESSES = Prepared(
    select(func.count())
    .select_from(SESSIONS)
    .where(
        SESSIONS.c.device_id == bindparam("device"),
        SESSIONS.c.pressed_at > bindparam("since"),
        SESSIONS.c.pressed_at <= bindparam("until"),
    )
)


def press(
    conn: Connection, token: str, fields: Callable[[], tuple[str, str, str, datetime]]
) -> Receipt:
    """A device's press, in the caller's write transaction (the API's unit of group
    commit, portal.writer.commit): the bearer token is checked first, then `fields()`
    gives (session_id, level, idempotency key, occurred_at) or raises for a bad body."""
    device = device_for_token(conn, token)
    if _unseen(device):
        _seen(conn, device)
    return _rate(conn, device, *fields())


def _rate(
    conn: Connection,
    device: Any,
    session_id: str,
    level: str,
    key: str,
    occurred_at: datetime,
) -> Receipt:
    if level not in LEVELS:
        raise Invalid(
            "Unknown level “%(value)s”: use satisfied, basic or dissatisfied.",
            field="level",
            code="invalid_level",
            value=level[:40],
        )
    source = f"device:{device.id}"
    session = _PRESS.first(conn, {"sid": session_id, "source": source, "key": key})
    if session is None or session.device_id != device.id:
        raise NotFound(
            "There is no session %(id)s on this device.", field="session_id", id=session_id[:40]
        )
    replay = session.rating_id is not None and session.rated_key == key
    # A key already used for another session's rating is a different body: 409.
    used = session.key_rating_id
    if used is not None and used != session.rating_id:
        raise Conflict(
            "This idempotency key was already used for a different rating.",
            field="idempotency_key",
            code="idempotency_conflict",
        )
    if session.rating_id is not None and not replay:
        raise Conflict(
            "This service session has already been rated.",
            field="session_id",
            code="session_already_rated",
        )
    if not replay:
        _check_window(session, occurred_at)
    rating = RatingIn(
        insurer=session.insurer_code,
        stage=session.stage,
        channel="counter",
        scale=3,
        value=LEVELS[level],
        occurred_at=occurred_at,
        source=source,
        idempotency_key=check_idempotency_key(key),
        branch=session.branch_code,
        staff_no=session.staff_no,
    )
    # The codes were just read with their ids: record() need not look them up again
    # (an inactive staff member is left to record(), which refuses it).
    subjects = Subjects.known(
        insurer=(session.insurer_code, session.insurer_id),
        branch=(session.branch_code, session.branch_id),
        staff=(session.staff_no, session.staff_id, session.staff_branch_id)
        if session.staff_active
        else None,
    )
    within = functools.partial(_mark_rated, session=session)
    return record_many(conn, [rating], within=within, subjects=subjects)[0]


def _check_window(session: Any, occurred_at: datetime) -> None:
    """A press counts if it happened while the session was open; a press queued offline
    may arrive later, so the time of the press decides, not the time of arrival."""
    if occurred_at.tzinfo is None:
        return  # record() rejects it with a clear message
    late = datetime.now(UTC) > utc(session.expires_at) + OFFLINE_GRACE
    if occurred_at > utc(session.expires_at) or late:
        raise Invalid(
            "This service session has expired (after 2 hours).",
            field="session_id",
            code="session_expired",
        )
    if occurred_at < utc(session.opened_at) - timedelta(minutes=2):
        raise Invalid(
            "The rating is older than its service session.",
            field="occurred_at",
            code="before_session",
        )


def _mark_rated(conn: Connection, row: dict[str, Any], *, session: Any) -> None:
    """Inside the rating's transaction: one rating per session, completion, flags."""
    now, pressed = row["recorded_at"], row["occurred_at"]
    done = _MARK_RATED.execute(
        conn, {"sid": session.id, "rid": row["id"], "now": now, "at": pressed}
    )
    if done != 1:  # a concurrent press won: roll the whole rating back
        raise Conflict(
            "This service session has already been rated.",
            field="session_id",
            code="session_already_rated",
        )
    _count(conn, session._asdict(), rated=1)
    _flag_misuse(conn, session, row, pressed)


def _flag_misuse(
    conn: Connection,
    session: Any,
    row: dict[str, Any],
    pressed: datetime,
) -> None:
    """By the time of the press, not of arrival: a queue flushed after an outage is not a
    burst, and a fast press queued offline is still fast."""
    base = dict(
        insurer_id=session.insurer_id,
        branch_id=session.branch_id,
        staff_id=session.staff_id,
        device_id=session.device_id,
        session_id=session.id,
        rating_id=row["id"],
        created_at=row["recorded_at"],
    )
    seconds = (pressed - utc(session.opened_at)).total_seconds()
    if seconds < FAST_SECONDS:
        _flag(conn, base, "fast_rating", seconds=round(seconds, 1))
    recent = _RECENT_PRESSES.scalar(
        conn, {"device": session.device_id, "since": pressed - BURST_WINDOW, "until": pressed}
    )
    if recent >= BURST_COUNT:
        _flag(conn, base, "burst", ratings_last_minute=int(recent))


def _flag(conn: Connection, base: dict[str, Any], kind: str, **detail: Any) -> None:
    conn.execute(
        CounterFlag.__table__.insert().values(
            kind=kind, detail=json.dumps(detail, sort_keys=True), **base
        )
    )
    audit.log(conn, f"device:{base['device_id']}", f"flag.{kind}", base["rating_id"], **detail)


def device_info(conn: Connection, device: Any) -> dict[str, Any]:
    """What the evaluator screen needs after pairing: where it is, who may serve."""
    place = conn.execute(
        select(Insurer.name.label("insurer"), Insurer.code, Branch.name.label("branch"))
        .select_from(Branch)
        .join(Insurer, Insurer.id == Branch.insurer_id)
        .where(Branch.id == device.branch_id)
    ).one()
    team = conn.execute(
        select(Staff.id, Staff.staff_no, Staff.name)
        .where(
            Staff.insurer_id == device.insurer_id, Staff.active, Staff.branch_id == device.branch_id
        )
        .order_by(Staff.staff_no)
    ).all()
    levels = stars.staff_stars(conn, [s.id for s in team])
    return {
        "device_id": device.id,
        "label": device.label,
        "insurer": place.insurer,
        "insurer_code": place.code,
        "branch": place.branch,
        "staff": [
            {
                "staff_no": s.staff_no,
                "name": s.name,
                "stars": levels[s.id].stars,
                "new": levels[s.id].is_new,
            }
            for s in team
        ],
    }
