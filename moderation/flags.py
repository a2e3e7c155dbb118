"""Abusive language in published texts goes to the regulator, never silently away.

A review or reply whose text hits the abuse word lists (moderation/screening.py) gets a
flag in the same transaction that stores it. The regulator's screening queue lists the
open flags; the regulator either keeps the text (the flag is closed) or opens a
takedown request for it, which is then decided like any other (moderation/takedowns.py).
A flag itself never hides anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from moderation.abuse import find_abuse
from portal import audit
from portal.canonical import utc
from portal.errors import Conflict, Invalid, NotFound
from portal.models import Insurer, Rating, RatingText, ScreeningFlag

OUTCOMES = ("kept", "takedown")
FLAG = ScreeningFlag


def abuse_terms(text: str) -> list[str]:
    """The abuse list terms in `text`, each once: `screen(text).abuse` without the
    personal-data masking, which flagging does not need (it took 3/4 of the time)."""
    return list(dict.fromkeys(hit.term for hit in find_abuse(text))) if text else []


def flag_texts(
    conn: Connection, texts: Iterable[tuple[str, str, int | None]], now: datetime | None = None
) -> int:
    """Flag each (rating_id, text, reply_id) whose text is abusive; returns how many."""
    at = now or datetime.now(UTC)
    rows = [
        {"rating_id": rid, "reply_id": reply_id, "terms": json.dumps(hits, ensure_ascii=False),
         "text": text, "flagged_at": at}
        for rid, text, reply_id in texts
        if (hits := abuse_terms(text))
    ]  # fmt: skip
    if rows:
        conn.execute(FLAG.__table__.insert(), rows)
    return len(rows)


@dataclass(frozen=True)
class Flag:
    id: int
    rating_id: str
    reply_id: int | None
    terms: list[str]
    flagged_at: datetime
    insurer_code: str
    insurer_name: str
    text: str  # the text that was screened, as written (a reply's version at the time)
    hidden: bool


def queue(conn: Connection, limit: int = 200) -> list[Flag]:
    """Open flags, oldest first."""
    stmt = (
        select(
            FLAG.id,
            FLAG.rating_id,
            FLAG.reply_id,
            FLAG.terms,
            FLAG.flagged_at,
            Insurer.code,
            Insurer.name,
            FLAG.text,
            RatingText.hidden,
        )  # fmt: skip
        .select_from(FLAG)
        .join(Rating, Rating.id == FLAG.rating_id)
        .join(Insurer, Insurer.id == Rating.insurer_id)
        .outerjoin(RatingText, RatingText.rating_id == FLAG.rating_id)
        .where(FLAG.reviewed_at.is_(None))
        .order_by(FLAG.flagged_at, FLAG.id)
        .limit(limit)
    )
    return [
        Flag(
            r.id,
            r.rating_id,
            r.reply_id,
            json.loads(r.terms),
            utc(r.flagged_at),
            r.code,
            r.name,
            r.text,
            bool(r.hidden),
        )  # fmt: skip
        for r in conn.execute(stmt)
    ]


def open_count(conn: Connection) -> int:
    stmt = select(func.count()).select_from(FLAG).where(FLAG.reviewed_at.is_(None))
    return int(conn.execute(stmt).scalar_one())


def resolve(
    conn: Connection,
    *,
    flag_id: int,
    user_id: int,
    outcome: str,
    note: str | None = None,
    now: datetime | None = None,
) -> int | None:
    """Close a flag: keep the text, or open a takedown request (returns its id)."""
    if outcome not in OUTCOMES:
        raise Invalid("Keep the text or open a takedown request.", code="bad_outcome")
    row = conn.execute(
        select(FLAG.rating_id, FLAG.reply_id, FLAG.reviewed_at, Rating.insurer_id)
        .join(Rating, Rating.id == FLAG.rating_id)
        .where(FLAG.id == flag_id)
    ).first()
    if row is None:
        raise NotFound("There is no such flag.", code="no_flag")
    if row.reviewed_at is not None:
        raise Conflict("This flag has been reviewed already.", code="already_reviewed")
    request_id = None
    if outcome == "takedown":
        from moderation import takedowns  # takedowns needs portal.ratings, which needs us

        if row.reply_id is not None:
            raise Invalid(
                "Replies are the insurer's own words; ask the insurer to edit the reply.",
                code="reply_takedown",
            )
        # A request the insurer already made covers the flag; the regulator decides it.
        request_id = takedowns.pending_for(conn, row.rating_id) or takedowns.request(
            conn, insurer_id=row.insurer_id, user_id=user_id, rating_id=row.rating_id,
            reason="abuse", explanation=note, source="screening", now=now,
        )  # fmt: skip
    at = now or datetime.now(UTC)
    done = conn.execute(
        update(FLAG)
        .where(FLAG.id == flag_id, FLAG.reviewed_at.is_(None))
        .values(reviewed_at=at, reviewed_by=user_id, outcome=outcome)
    )
    if done.rowcount != 1:
        raise Conflict("This flag has been reviewed already.", code="already_reviewed")
    detail: dict[str, Any] = {"flag": flag_id, "outcome": outcome, "request": request_id}
    audit.log(conn, f"user:{user_id}", "screening.reviewed", f"rating:{row.rating_id}", **detail)
    return request_id
