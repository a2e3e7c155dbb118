"""Public reply threads: the insurer answers a rating, the reviewer may follow up once.

One thread per rating: at most one insurer reply (which the insurer may edit; every
version is kept in the append-only reply_revisions, and the public sees "edited" with
the history) and at most one follow-up by the reviewer, through the link on their
receipt. A reply may say which concrete change was made because of the rating. Texts
are stored as written and masked for personal data when shown; abusive ones are
flagged for the regulator like reviews. Nothing here touches a score or a review text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from moderation.flags import flag_texts
from moderation.masking import mask as mask_text
from portal import audit
from portal.canonical import timestamp, utc
from portal.directory import policy_patterns
from portal.errors import Conflict, Invalid, NotFound
from portal.models import Insurer, Rating, RatingText, Reply, ReplyRevision
from portal.ratings import clean_text, day_of
from portal.workdays import working_days_between

AUTHORS = ("insurer", "reviewer")


def _body(raw: str | None) -> str:
    text = clean_text(raw, "body")
    if not text:
        raise Invalid("Please write the reply.", field="body", code="reply_missing")
    return text


def _revision(conn: Connection, reply_id: int, body: str, change: str | None, user: Any, at: Any):
    conn.execute(
        ReplyRevision.__table__.insert().values(
            reply_id=reply_id, body=body, change_made=change, user_id=user, created_at=at
        )
    )


def post(
    conn: Connection,
    *,
    insurer_id: int,
    user_id: int,
    rating_id: str,
    body: str | None,
    change_made: str | None = None,
    now: datetime | None = None,
) -> int:
    """Write or edit the insurer's reply to one of its ratings; returns the reply id."""
    rating = conn.execute(
        select(Rating.insurer_id, Rating.recorded_at, RatingText.rating_id.label("text"))
        .outerjoin(RatingText, RatingText.rating_id == Rating.id)
        .where(Rating.id == rating_id)
    ).first()
    if rating is None or rating.insurer_id != insurer_id:
        raise NotFound("There is no such rating.", code="no_rating")
    if rating.text is None:  # nothing public to answer: the thread shows under a review
        raise Invalid("Only written reviews can be answered in public.", code="no_text")
    text = _body(body)
    change = clean_text(change_made, "change_made")
    at = now or datetime.now(UTC)
    current = conn.execute(
        select(Reply.id, Reply.body, Reply.change_made).where(
            Reply.rating_id == rating_id, Reply.author == "insurer"
        )
    ).first()
    if current is None:
        days = working_days_between(day_of(rating.recorded_at), day_of(at))
        try:
            with conn.begin_nested():
                reply_id = conn.execute(
                    Reply.__table__.insert()
                    .values(
                        rating_id=rating_id,
                        insurer_id=insurer_id,
                        author="insurer",
                        user_id=user_id,
                        body=text,
                        change_made=change,
                        created_at=at,
                        working_days=days,
                    )  # fmt: skip
                    .returning(Reply.id)
                ).scalar_one()
        except IntegrityError:  # a colleague replied a moment ago: edit theirs instead
            raise Conflict(
                "A colleague has just replied to this rating; reload to see it.",
                code="reply_exists",
            ) from None
        action = "reply.posted"
    else:
        reply_id = current.id
        if (current.body, current.change_made) == (text, change):
            return int(reply_id)  # nothing changed: no new version
        conn.execute(
            update(Reply)
            .where(Reply.id == reply_id)
            .values(body=text, change_made=change, updated_at=at, user_id=user_id)
        )
        action = "reply.edited"
    _revision(conn, reply_id, text, change, user_id, at)
    flag_texts(conn, [(rating_id, f"{text}\n{change or ''}", reply_id)], at)
    audit.log(conn, f"user:{user_id}", action, f"rating:{rating_id}", reply=reply_id)
    return int(reply_id)


def follow_up(
    conn: Connection, *, rating_id: str, body: str | None, now: datetime | None = None
) -> int:
    """The reviewer's one follow-up, after the insurer has replied. The caller has
    checked the receipt link (only the reviewer holds it)."""
    text = _body(body)
    hidden = conn.execute(
        select(RatingText.hidden).where(RatingText.rating_id == rating_id)
    ).scalar()
    if hidden:  # what the regulator took down is not posted again as a follow-up
        raise Conflict(
            "Your review was removed after regulator review; it cannot be followed up.",
            code="review_removed",
        )
    insurer = conn.execute(
        select(Reply.insurer_id).where(Reply.rating_id == rating_id, Reply.author == "insurer")
    ).first()
    if insurer is None:
        raise Conflict("You can follow up once the insurer has replied.", code="no_reply_yet")
    at = now or datetime.now(UTC)
    try:
        with conn.begin_nested():
            reply_id = conn.execute(
                Reply.__table__.insert()
                .values(
                    rating_id=rating_id,
                    insurer_id=insurer.insurer_id,
                    author="reviewer",
                    body=text,
                    created_at=at,
                )  # fmt: skip
                .returning(Reply.id)
            ).scalar_one()
    except IntegrityError:
        raise Conflict("You have followed up already.", code="follow_up_exists") from None
    _revision(conn, reply_id, text, None, None, at)
    flag_texts(conn, [(rating_id, text, reply_id)], at)
    audit.log(conn, "reviewer", "reply.follow_up", f"rating:{rating_id}", reply=reply_id)
    return int(reply_id)


# -- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadItem:
    id: int
    author: str  # insurer | reviewer
    body: str  # masked for personal data
    change_made: str | None  # masked
    created_at: datetime
    updated_at: datetime | None

    @property
    def edited(self) -> bool:
        return self.updated_at is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "author": self.author,
            "body": self.body,
            "change_made": self.change_made,
            "created_at": timestamp(self.created_at),
            "edited_at": timestamp(self.updated_at) if self.updated_at else None,
        }


def _item(row: Any) -> ThreadItem:
    patterns = policy_patterns(row.policy_format)
    return ThreadItem(
        id=row.id,
        author=row.author,
        body=mask_text(row.body, patterns),
        change_made=mask_text(row.change_made, patterns) if row.change_made else None,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at) if row.updated_at else None,
    )


def threads(conn: Connection, rating_ids: Iterable[str]) -> dict[str, list[ThreadItem]]:
    """The thread of each rating (insurer reply first), for a page of reviews."""
    ids = list(dict.fromkeys(rating_ids))
    out: dict[str, list[ThreadItem]] = defaultdict(list)
    if not ids:
        return out
    rows = conn.execute(
        select(*Reply.__table__.c, Insurer.policy_format)
        .outerjoin(Insurer, Insurer.id == Reply.insurer_id)
        .where(Reply.rating_id.in_(ids))
        .order_by(Reply.created_at, Reply.id)
    ).all()
    for row in sorted(rows, key=lambda r: AUTHORS.index(r.author)):
        out[row.rating_id].append(_item(row))
    return out


@dataclass(frozen=True)
class Version:
    body: str
    change_made: str | None
    at: datetime


def history(conn: Connection, reply_id: int) -> list[Version]:
    """Every version of a reply, oldest first (masked). Empty for an unknown reply."""
    fmt = conn.execute(
        select(Insurer.policy_format)
        .join(Reply, Reply.insurer_id == Insurer.id)
        .where(Reply.id == reply_id)
    ).scalar()
    patterns = policy_patterns(fmt)
    rows = conn.execute(
        select(ReplyRevision.body, ReplyRevision.change_made, ReplyRevision.created_at)
        .where(ReplyRevision.reply_id == reply_id)
        .order_by(ReplyRevision.created_at, ReplyRevision.id)
    ).all()
    return [
        Version(mask_text(r.body, patterns),
                mask_text(r.change_made, patterns) if r.change_made else None,
                utc(r.created_at))
        for r in rows
    ]  # fmt: skip


def reply_rating(conn: Connection, reply_id: int) -> str | None:
    return conn.execute(select(Reply.rating_id).where(Reply.id == reply_id)).scalar()


def count_replies(conn: Connection, insurer_id: int) -> int:
    stmt = select(func.count()).where(Reply.insurer_id == insurer_id, Reply.author == "insurer")
    return int(conn.execute(stmt).scalar_one())
