"""An insurer's inbox: every rating about it, unanswered and newest first.

Ages count working days on the statutory calendar (portal/workdays.py) from the China
date the rating reached the portal. A dissatisfied rating without a reply after more
than OVERDUE_AFTER working days is overdue. Filters map one-to-one to URL parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, and_, case, func, select

from portal.canonical import utc
from portal.directory import policy_patterns
from portal.models import Branch, Insurer, Rating, RatingText, Reply, Staff, TakedownRequest
from portal.ratings import CHINA, day_of
from portal.reviews import LEVELS, PARSERS, mask_text, star_bounds
from portal.search.documents import STARS
from portal.workdays import working_days_between

OVERDUE_AFTER = 5  # working days, for a dissatisfied rating (the service rule)
PER_PAGE = 25
MAX_PAGE = 400
_CODE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _code(raw: str) -> str:
    if not 0 < len(raw) <= 32 or not set(raw) <= _CODE_CHARS:
        raise ValueError(raw)
    return raw


def _replied(raw: str) -> bool:
    if raw not in ("yes", "no"):
        raise ValueError(raw)
    return raw == "yes"


def _yes(raw: str) -> bool:
    if raw != "1":
        raise ValueError(raw)
    return True


def _page(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ValueError(raw)
    return int(raw)


INBOX_PARSERS = {
    "stage": PARSERS["stage"],
    "channel": PARSERS["channel"],
    "stars": PARSERS["stars"],
    "branch": _code,
    "staff": _code,
    "replied": _replied,
    "overdue": _yes,
    "page": _page,
}


@dataclass(frozen=True)
class InboxFilter:
    stage: str | None = None
    channel: str | None = None
    stars: str | None = None
    branch: str | None = None  # branch code
    staff: str | None = None  # staff number
    replied: bool | None = None
    overdue: bool = False
    page: int = 1

    @classmethod
    def parse(cls, params: Any) -> InboxFilter:
        """Lenient: a hand-edited bad value is ignored, as on the public pages."""
        values: dict[str, Any] = {}
        for name, parse in INBOX_PARSERS.items():
            raw = (params.get(name) or "").strip()
            if raw:
                try:
                    values[name] = parse(raw)
                except ValueError:
                    continue
        return cls(**values)

    def query_string(self, **changes: Any) -> str:
        f = replace(self, **changes)
        out: dict[str, str] = {}
        for item in fields(f):
            value = getattr(f, item.name)
            if (
                value is None
                or value == ""
                or (item.name, value) in (("page", 1), ("overdue", False))
            ):
                continue
            if item.name == "replied":
                value = "yes" if value else "no"
            out[item.name] = "1" if value is True else str(value)
        return "?" + urlencode(out) if out else ""


@dataclass(frozen=True)
class InboxItem:
    rating_id: str
    stage: str
    channel: str
    stars: int
    level: str | None
    score: int
    dissatisfied: bool
    occurred_at: datetime
    recorded_at: datetime
    branch_name: str | None
    staff_name: str | None
    staff_no: str | None
    text: str | None  # masked; None without a text or when removed
    removed: bool
    replied: bool
    reply_days: int | None  # working days it took to reply
    age: int  # working days since it arrived
    overdue: bool
    takedown_pending: bool


@dataclass(frozen=True)
class InboxPage:
    items: list[InboxItem]
    total: int
    page: int
    overdue: int  # overdue ratings in the whole inbox, whatever the filters

    @property
    def pages(self) -> int:
        """Pages to link to: the inbox pages go as far as MAX_PAGE (narrow the filters)."""
        return min(MAX_PAGE, max(1, -(-self.total // PER_PAGE)))


def overdue_cutoff(today: date) -> datetime:
    """Ratings recorded before this instant have waited more than OVERDUE_AFTER working
    days by `today` (the start of the first China day that has not)."""
    day = today
    while working_days_between(day, today) <= OVERDUE_AFTER:
        day -= timedelta(days=1)
    # In UTC: SQLite's DateTime binds a naive value and would drop the +08:00.
    return datetime.combine(day + timedelta(days=1), time(), CHINA).astimezone(UTC)


INSURER_REPLY = and_(Reply.rating_id == Rating.id, Reply.author == "insurer")
PENDING = (
    select(TakedownRequest.id)
    .where(TakedownRequest.rating_id == Rating.id, TakedownRequest.status == "pending")
    .exists()
)


def _filtered(insurer_id: int, f: InboxFilter, cutoff: datetime) -> Any:
    stmt = (
        select(
            Rating.id,
            Rating.stage,
            Rating.channel,
            Rating.scale,
            Rating.score,
            Rating.bottom_box,
            Rating.occurred_at,
            Rating.recorded_at,
            STARS.label("stars"),
            Branch.name.label("branch_name"),
            Staff.name.label("staff_name"),
            Staff.staff_no,
            RatingText.body,
            RatingText.hidden,
            Reply.id.label("reply_id"),
            Reply.working_days,
            PENDING.label("pending"),
        )  # fmt: skip
        .select_from(Rating)
        .outerjoin(Branch, Branch.id == Rating.branch_id)
        .outerjoin(Staff, Staff.id == Rating.staff_id)
        .outerjoin(RatingText, RatingText.rating_id == Rating.id)
        .outerjoin(Reply, INSURER_REPLY)
        .where(Rating.insurer_id == insurer_id)
    )
    for column, value in ((Rating.stage, f.stage), (Rating.channel, f.channel)):
        if value is not None:
            stmt = stmt.where(column == value)
    if f.stars:
        low, high = star_bounds(f.stars)
        stmt = stmt.where(STARS.between(low, high))
    if f.branch:
        stmt = stmt.where(Branch.code == f.branch)
    if f.staff:
        stmt = stmt.where(Staff.staff_no == f.staff)
    if f.replied is not None:
        stmt = stmt.where(Reply.id.is_not(None) if f.replied else Reply.id.is_(None))
    if f.overdue:
        stmt = stmt.where(_overdue(cutoff))
    return stmt


def _overdue(cutoff: datetime) -> Any:
    """A dissatisfied written review without a reply (a text is what a public reply
    answers), received before the cutoff."""
    return and_(
        Rating.bottom_box.is_(True),
        RatingText.rating_id.is_not(None),
        RatingText.hidden.is_(False),
        Reply.id.is_(None),
        Rating.recorded_at < cutoff,
    )


def inbox(
    conn: Connection, insurer_id: int, f: InboxFilter, now: datetime | None = None
) -> InboxPage:
    now = utc(now) if now else datetime.now(CHINA)
    today = day_of(now)
    cutoff = overdue_cutoff(today)
    stmt = _filtered(insurer_id, f, cutoff)
    unanswered_first = case((Reply.id.is_(None), 0), else_=1)
    rows = conn.execute(
        stmt.order_by(unanswered_first, Rating.recorded_at.desc(), Rating.id.desc())
        .limit(PER_PAGE)
        .offset((f.page - 1) * PER_PAGE)
    ).all()
    total = conn.execute(
        select(func.count()).select_from(stmt.with_only_columns(Rating.id).subquery())
    ).scalar_one()
    overdue = conn.execute(
        select(func.count()).select_from(
            _filtered(insurer_id, InboxFilter(overdue=True), cutoff)
            .with_only_columns(Rating.id)
            .subquery()
        )
    ).scalar_one()
    fmt = conn.execute(select(Insurer.policy_format).where(Insurer.id == insurer_id)).scalar()
    items = [_item(r, today, cutoff, policy_patterns(fmt)) for r in rows]
    return InboxPage(items, int(total), f.page, int(overdue))


def _item(r: Any, today: date, cutoff: datetime, patterns: tuple[str, ...] = ()) -> InboxItem:
    recorded = utc(r.recorded_at)
    replied = r.reply_id is not None
    return InboxItem(
        rating_id=r.id, stage=r.stage, channel=r.channel, stars=int(r.stars),
        level=LEVELS.get(int(r.stars)) if r.scale == 3 else None, score=r.score,
        dissatisfied=bool(r.bottom_box), occurred_at=utc(r.occurred_at),
        recorded_at=recorded, branch_name=r.branch_name, staff_name=r.staff_name,
        staff_no=r.staff_no, text=mask_text(r.body, patterns) if r.body and not r.hidden else None,
        removed=bool(r.hidden), replied=replied, reply_days=r.working_days,
        age=working_days_between(day_of(recorded), today),
        overdue=bool(r.bottom_box) and bool(r.body) and not r.hidden and not replied
        and recorded < cutoff,
        takedown_pending=bool(r.pending),
    )  # fmt: skip


def item(
    conn: Connection, insurer_id: int, rating_id: str, now: datetime | None = None
) -> InboxItem | None:
    """One of the insurer's ratings, as the inbox shows it; None for anyone else's."""
    today = day_of(utc(now) if now else datetime.now(CHINA))
    cutoff = overdue_cutoff(today)
    stmt = _filtered(insurer_id, InboxFilter(), cutoff).where(Rating.id == rating_id[:64])
    row = conn.execute(stmt).first()
    fmt = conn.execute(select(Insurer.policy_format).where(Insurer.id == insurer_id)).scalar()
    return _item(row, today, cutoff, policy_patterns(fmt)) if row else None


def choices(conn: Connection, insurer_id: int) -> dict[str, Any]:
    """The insurer and its branches, for the filter form."""
    insurer = conn.execute(select(Insurer).where(Insurer.id == insurer_id)).one()
    branches = conn.execute(
        select(Branch.code, Branch.name)
        .where(Branch.insurer_id == insurer_id)
        .order_by(Branch.name)
    ).all()
    return {"insurer": insurer, "branches": branches}
