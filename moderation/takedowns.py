"""The takedown workflow: an insurer asks, the regulator decides, only then a text hides.

An insurer picks one of its ratings' texts, a reason and an explanation. The text stays
public while the request is pending. The regulator approves (the text is hidden, and
for personal data its body is erased; the score stays and keeps counting) or rejects
(the text stays; the note tells the insurer why). Requests and decisions are audit
events, decisions an append-only table, and a database trigger refuses to hide or
change a text unless an approved decision for its rating exists (see migration 0004):
this module is the only code that writes one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from moderation.masking import mask
from portal import audit
from portal.canonical import utc
from portal.directory import policy_patterns
from portal.errors import Conflict, Invalid, NotFound
from portal.models import (
    TAKEDOWN_REASONS,
    Insurer,
    Rating,
    RatingText,
    ScreeningFlag,
    TakedownDecision,
    TakedownRequest,
    User,
)
from portal.ratings import CHINA, clean_text
from portal.search import enqueue

REASONS = TAKEDOWN_REASONS
DECISIONS = ("approved", "rejected")
REQ, DEC, TXT = TakedownRequest, TakedownDecision, RatingText


def _not_found() -> NotFound:
    return NotFound("There is no such rating.", code="no_rating")


def _explanation(raw: str | None, field: str) -> str:
    text = clean_text(raw, field)
    if not text:
        raise Invalid("Please explain.", field=field, code="explanation_missing")
    return text


def request(
    conn: Connection,
    *,
    insurer_id: int,
    user_id: int,
    rating_id: str,
    reason: str,
    explanation: str | None,
    source: str = "insurer",
    now: datetime | None = None,
) -> int:
    """Open a request to hide one rating's text; the text stays visible meanwhile.

    An insurer can only ask about its own ratings (any other is "not found")."""
    row = conn.execute(
        select(Rating.insurer_id, TXT.hidden, TXT.redacted)
        .select_from(Rating)
        .outerjoin(TXT, TXT.rating_id == Rating.id)
        .where(Rating.id == rating_id)
    ).first()
    if row is None or row.insurer_id != insurer_id:
        raise _not_found()
    if row.hidden is None:
        raise Invalid("This rating has no text to take down.", code="no_text")
    # A hidden text can still be erased for personal data (it stays in the database).
    if row.redacted or (row.hidden and reason != "personal_data"):
        raise Conflict("This text has been removed already.", code="already_removed")
    if reason not in REASONS:
        raise Invalid("Choose a reason from the list.", field="reason", code="bad_reason")
    text = _explanation(explanation, "explanation")
    if pending_for(conn, rating_id) is not None:
        raise _pending()
    at = now or datetime.now(UTC)
    try:
        with conn.begin_nested():  # uq_takedown_pending: one pending request per text
            rid = conn.execute(
                REQ.__table__.insert()
                .values(
                    rating_id=rating_id,
                    insurer_id=insurer_id,
                    reason=reason,
                    explanation=text,
                    requested_by=user_id,
                    requested_at=at,
                    source=source,
                    status="pending",
                )  # fmt: skip
                .returning(REQ.id)
            ).scalar_one()
    except IntegrityError:
        raise _pending() from None
    audit.log(
        conn, f"user:{user_id}", "takedown.requested", f"rating:{rating_id}",
        request=rid, reason=reason, source=source, explanation=text,
    )  # fmt: skip
    return int(rid)


def _pending() -> Conflict:
    return Conflict(
        "A request about this text is waiting for the regulator already.",
        code="request_pending",
    )


def pending_for(conn: Connection, rating_id: str) -> int | None:
    """The id of the pending request about a rating's text, if there is one."""
    stmt = select(REQ.id).where(REQ.rating_id == rating_id, REQ.status == "pending")
    return conn.execute(stmt).scalar()


def decide(
    conn: Connection,
    *,
    request_id: int,
    user_id: int,
    decision: str,
    note: str | None,
    now: datetime | None = None,
) -> str:
    """The regulator's decision; returns the rating id. A request is decided once."""
    if decision not in DECISIONS:
        raise Invalid("Approve or reject the request.", field="decision", code="bad_decision")
    req = conn.execute(select(REQ).where(REQ.id == request_id)).first()
    if req is None:
        raise NotFound("There is no such request.", code="no_request")
    if req.status != "pending":
        raise Conflict("This request has been decided already.", code="already_decided")
    # A rejection tells the insurer why; an approval's note is optional.
    text = _explanation(note, "note") if decision == "rejected" else clean_text(note, "note") or ""
    at = now or datetime.now(UTC)
    try:
        with conn.begin_nested():
            conn.execute(
                DEC.__table__.insert().values(
                    request_id=request_id,
                    decision=decision,
                    note=text,
                    decided_by=user_id,
                    decided_at=at,
                )
            )
    except IntegrityError:  # another regulator decided it a moment ago
        raise Conflict("This request has been decided already.", code="already_decided") from None
    conn.execute(update(REQ).where(REQ.id == request_id).values(status=decision))
    if decision == "approved":
        _remove(conn, req.rating_id, req.reason, at)
        enqueue(conn, [req.rating_id])
    audit.log(
        conn, f"user:{user_id}", f"takedown.{decision}", f"rating:{req.rating_id}",
        request=request_id, reason=req.reason, note=text,
    )  # fmt: skip
    return str(req.rating_id)


def _remove(conn: Connection, rating_id: str, reason: str, at: datetime) -> None:
    """Hide the text (dated, with the reason); for personal data also erase it, from the
    text and from any screening flag that kept a copy."""
    conn.execute(
        update(TXT)
        .where(TXT.rating_id == rating_id, TXT.hidden.is_(False))
        .values(hidden=True, hidden_at=at, hidden_reason=reason)
    )
    if reason == "personal_data":
        conn.execute(
            update(TXT)
            .where(TXT.rating_id == rating_id, TXT.redacted.is_(False))
            .values(body="", redacted=True)
        )
        conn.execute(
            update(ScreeningFlag)
            .where(ScreeningFlag.rating_id == rating_id, ScreeningFlag.reply_id.is_(None))
            .values(text="")
        )


# -- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    requests: int = 0
    approved: int = 0
    rejected: int = 0

    @property
    def approval_rate(self) -> float | None:
        decided = self.approved + self.rejected
        return self.approved / decided if decided else None


@dataclass(frozen=True)
class Request:
    id: int
    rating_id: str
    insurer_id: int
    insurer_code: str
    insurer_name: str
    reason: str
    explanation: str
    source: str
    requested_at: datetime
    requested_by: str
    status: str
    text: str  # the full stored text (the regulator decides on what was submitted)
    hidden: bool
    stage: str
    channel: str
    score: int
    decision_note: str | None = None
    decided_at: datetime | None = None
    history: History | None = None


def _select() -> Any:
    return (
        select(
            REQ.id,
            REQ.rating_id,
            REQ.reason,
            REQ.explanation,
            REQ.source,
            REQ.requested_at,
            REQ.status,
            REQ.insurer_id,
            Insurer.code,
            Insurer.name,
            Insurer.policy_format,
            User.username,
            TXT.body,
            TXT.hidden,
            Rating.stage,
            Rating.channel,
            Rating.score,
            DEC.note,
            DEC.decided_at,
        )  # fmt: skip
        .select_from(REQ)
        .join(Insurer, Insurer.id == REQ.insurer_id)
        .join(User, User.id == REQ.requested_by)
        .join(Rating, Rating.id == REQ.rating_id)
        .join(TXT, TXT.rating_id == REQ.rating_id)
        .outerjoin(DEC, DEC.request_id == REQ.id)
    )


def _request(row: Any, history: History | None = None) -> Request:
    return Request(
        id=row.id,
        rating_id=row.rating_id,
        insurer_id=row.insurer_id,
        insurer_code=row.code,
        insurer_name=row.name,
        reason=row.reason,
        explanation=row.explanation,
        source=row.source,
        requested_at=utc(row.requested_at),
        requested_by=row.username,
        status=row.status,
        text=row.body,
        hidden=bool(row.hidden),
        stage=row.stage,
        channel=row.channel,
        score=row.score,
        decision_note=row.note,
        decided_at=utc(row.decided_at) if row.decided_at else None,
        history=history,
    )


def histories(conn: Connection) -> dict[int, History]:
    """Per insurer: requests made (by the insurer itself), approved, rejected."""
    stmt = (
        select(REQ.insurer_id, REQ.status, func.count())
        .where(REQ.source == "insurer")
        .group_by(REQ.insurer_id, REQ.status)
    )
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for insurer_id, status, n in conn.execute(stmt):
        counts[insurer_id][status] += int(n)
    return {
        iid: History(sum(c.values()), c["approved"], c["rejected"]) for iid, c in counts.items()
    }


def queue(conn: Connection, limit: int = 200) -> list[Request]:
    """Pending requests, oldest first, each with its insurer's record."""
    rows = conn.execute(
        _select().where(REQ.status == "pending").order_by(REQ.requested_at, REQ.id).limit(limit)
    ).all()
    seen = histories(conn) if rows else {}
    return [_request(r, seen.get(r.insurer_id, History())) for r in rows]


def pending_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).where(REQ.status == "pending")).scalar_one())


def of_insurer(conn: Connection, insurer_id: int, limit: int = 200) -> list[Request]:
    """An insurer's own requests, newest first, with the regulator's answers. The text is
    shown as the public saw it (masked), and not at all once it has been removed."""
    rows = conn.execute(
        _select()
        .where(REQ.insurer_id == insurer_id, REQ.source == "insurer")
        .order_by(REQ.requested_at.desc(), REQ.id.desc())
        .limit(limit)
    ).all()
    return [
        replace(
            _request(row),
            text="" if row.hidden else mask(row.body, policy_patterns(row.policy_format)),
        )
        for row in rows
    ]


def for_rating(conn: Connection, rating_id: str) -> list[Request]:
    rows = conn.execute(
        _select().where(REQ.rating_id == rating_id).order_by(REQ.requested_at, REQ.id)
    ).all()
    return [_request(r) for r in rows]


def get(conn: Connection, request_id: int) -> Request | None:
    row = conn.execute(_select().where(REQ.id == request_id)).first()
    return _request(row) if row else None


@dataclass(frozen=True)
class QuarterRow:
    insurer_code: str
    insurer_name: str
    quarter: str  # "2026-Q3"
    requests: int
    approved: int
    rejected: int

    @property
    def pending(self) -> int:
        return self.requests - self.approved - self.rejected

    @property
    def year_quarter(self) -> tuple[str, str]:
        year, _, q = self.quarter.partition("-Q")
        return year, q


def quarter_of(at: datetime) -> str:
    local = utc(at).astimezone(CHINA)
    return f"{local.year}-Q{(local.month - 1) // 3 + 1}"


def transparency(conn: Connection) -> list[QuarterRow]:
    """Requests made by insurers, per insurer and quarter (China time), newest first."""
    stmt = (
        select(Insurer.code, Insurer.name, REQ.requested_at, REQ.status)
        .select_from(REQ)
        .join(Insurer, Insurer.id == REQ.insurer_id)
        .where(REQ.source == "insurer")
    )
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for code, name, at, status in conn.execute(stmt):
        c = counts[(quarter_of(at), code, name)]
        c[0] += 1
        c[1] += status == "approved"
        c[2] += status == "rejected"
    keys = sorted(counts, key=lambda k: (k[0], k[1]))
    keys.sort(key=lambda k: k[0], reverse=True)
    return [QuarterRow(code, name, q, *counts[(q, code, name)]) for q, code, name in keys]
