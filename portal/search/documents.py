"""Review documents, read from what the ratings core stored (the only source of truth).

The same SELECT feeds the outbox worker, `reindex` and the SQL fallback's searches,
so every backend agrees on what a review document is and which texts are visible.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, case, func, select

from moderation.masking import mask
from portal.canonical import utc
from portal.directory import policy_patterns
from portal.models import Branch, Insurer, Rating, RatingText
from portal.search.base import ReviewDoc, province_of

RATINGS: Table = Rating.__table__  # type: ignore[assignment]
TEXTS: Table = RatingText.__table__  # type: ignore[assignment]
INSURERS: Table = Insurer.__table__  # type: ignore[assignment]
BRANCHES: Table = Branch.__table__  # type: ignore[assignment]
R, T, INS, BR = RATINGS.c, TEXTS.c, INSURERS.c, BRANCHES.c

STARS = case(
    (R.scale == 5, R.value),
    (R.value == 1, 5),
    (R.value == 2, 3),
    else_=1,
)
# Facets and filters in SQL need the same values the documents carry.
COLUMNS: dict[str, Any] = {
    "id": R.id,
    "insurer_code": INS.code,
    "insurer_name": INS.name,
    "branch_name": BR.name,
    "region": BR.region,
    "stage": R.stage,
    "channel": R.channel,
    "stars": STARS,
    "score": R.score,
    "verified": R.verified,
    "text": T.body,
    "occurred_at": R.occurred_at,
}
CHUNK = 500  # ids per IN (...) list: well below SQLite's bound-parameter limit


def review_select() -> Select[Any]:
    """Ratings that have a visible text, with the columns a ReviewDoc needs.

    Hidden texts never qualify; redacted ones do, since their body is already redacted.
    """
    return (
        select(*(col.label(name) for name, col in COLUMNS.items()), INS.policy_format)
        .select_from(RATINGS)
        .join(TEXTS, T.rating_id == R.id)
        .join(INSURERS, INS.id == R.insurer_id)
        .outerjoin(BRANCHES, BR.id == R.branch_id)
        .where(T.hidden.is_(False))
    )


def to_doc(row: Any) -> ReviewDoc:
    data = dict(row._mapping)
    patterns = policy_patterns(data.pop("policy_format", None))
    data["occurred_at"] = int(utc(data["occurred_at"]).timestamp())
    data["province"] = province_of(data["region"])
    data["verified"] = bool(data["verified"])
    # What is shown and indexed is masked (phone numbers, ID numbers, ...); the stored
    # text stays as submitted. (The SQL fallback's LIKE path for short terms still reads
    # the stored text; Meilisearch only ever sees the masked form.)
    data["text"] = mask(data["text"], patterns)
    return ReviewDoc.from_mapping(data)


def chunks(items: Iterable[str], size: int = CHUNK) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load(conn: Connection, rating_ids: Iterable[str]) -> list[ReviewDoc]:
    """The visible review documents among these ratings (others are absent)."""
    docs: list[ReviewDoc] = []
    for batch in chunks(sorted(set(rating_ids))):
        rows = conn.execute(review_select().where(R.id.in_(batch)))
        docs.extend(to_doc(row) for row in rows)
    return docs


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        sub = review_select().subquery()
        return int(conn.execute(select(func.count()).select_from(sub)).scalar_one())


def batches(engine: Engine, size: int = 1000) -> Iterator[Sequence[ReviewDoc]]:
    """All review documents in id order, one short transaction per batch.

    Keyset paging keeps each read short: on SQLite every transaction takes the write
    lock, so one long read would stall rating writes for the whole rebuild.
    """
    last = ""
    while True:
        stmt = review_select().where(R.id > last).order_by(R.id).limit(size)
        with engine.connect() as conn:
            docs = [to_doc(row) for row in conn.execute(stmt)]
        if not docs:
            return
        yield docs
        last = docs[-1].id
