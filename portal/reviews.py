"""Published reviews: the public list of written ratings, filtered, sorted and paged.

A review is a rating with a text. `list_reviews` reads the database (one insurer's
page, or the API without a query): a text taken down by the regulator stays in the
list as "removed" and its score still shows. `search_reviews` asks the search index
(any text query, facets): removed texts are not in the index, so they never match.
Texts are masked for personal data whichever way they are read.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, Select, func, select

from moderation.masking import mask
from portal import replies
from portal.canonical import timestamp, utc
from portal.directory import policy_patterns
from portal.errors import BadRequest
from portal.models import CHANNELS, STAGES, InsurerPage
from portal.regions import PROVINCES, province_name
from portal.search import SearchIndex, SearchQuery
from portal.search.base import MAX_PER_PAGE, MAX_QUERY, ReviewDoc
from portal.search.documents import BR, BRANCHES, INS, INSURERS, RATINGS, STARS, TEXTS, R, T

PER_PAGE = 20
COUNT_CAP = 10_000  # a list counts at most this far (Meilisearch's maxTotalHits too)
MAX_PAGE = 100_000
SORTS = ("newest", "oldest", "lowest", "highest")
SEARCH_SORTS = ("relevance", *SORTS)
LEVELS = {5: "satisfied", 3: "basic", 1: "dissatisfied"}  # 3-level ratings as stars
ORDER: dict[str, list[Any]] = {
    "newest": [R.occurred_at.desc(), R.id.desc()],
    "oldest": [R.occurred_at.asc(), R.id.asc()],
    "lowest": [R.score.asc(), R.occurred_at.desc(), R.id.desc()],
    "highest": [R.score.desc(), R.occurred_at.desc(), R.id.desc()],
}
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$")
_REGION = re.compile(r"^\d{2}(\d{4})?$")
_YES, _NO = ("true", "1", "yes"), ("false", "0", "no")


def mask_text(text: str, policy_patterns: tuple[str, ...] = ()) -> str:
    """What the public sees of a stored text: personal data masked (moderation/masking),
    policy numbers too when the insurer's format is known."""
    return mask(text, policy_patterns)


# -- parameters ------------------------------------------------------------------------


def _bad(name: str, value: str) -> BadRequest:
    return BadRequest(
        "Invalid value “%(value)s” for the parameter %(name)s.",
        field=name,
        code="invalid_parameter",
        value=value[:40],
        name=name,
    )


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(raw)
        return raw

    return parse


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
            raise ValueError(raw)
        return int(raw)

    return parse


def _flag(raw: str) -> bool:
    if raw.lower() in _YES + _NO:
        return raw.lower() in _YES
    raise ValueError(raw)


def _insurer(raw: str) -> str:
    if not _CODE.match(raw):
        raise ValueError(raw)
    return raw.upper()


def _province(raw: str) -> str:
    """A province as its GB/T 2260 code: "43" and any code in Hunan give "430000"."""
    if not _REGION.match(raw) or raw[:2] not in PROVINCES:
        raise ValueError(raw)
    return raw[:2] + "0000"


def _stars(raw: str) -> str:
    """One star value ("2") or a range ("1-2": the unhappy ones), normalised."""
    lo, _, hi = raw.partition("-")
    low, high = int(lo), int(hi or lo)  # ValueError for junk, as the other parsers
    if not 1 <= low <= high <= 5:
        raise ValueError(raw)
    return str(low) if low == high else f"{low}-{high}"


def star_bounds(value: str | int) -> tuple[int, int]:
    lo, _, hi = str(value).partition("-")
    return int(lo), int(hi or lo)


PARSERS: dict[str, Callable[[str], Any]] = {
    "insurer": _insurer,
    "stage": _choice(STAGES),
    "channel": _choice(CHANNELS),
    "stars": _stars,
    "verified": _flag,
    "region": _province,
    "sort": _choice(SEARCH_SORTS),
    "page": _int_in(1, MAX_PAGE),
    "per_page": _int_in(1, MAX_PER_PAGE),
}


@dataclass(frozen=True)
class ReviewFilter:
    """What a visitor asked for; every field maps to one URL query parameter."""

    q: str = ""
    insurer: str | None = None
    stage: str | None = None
    channel: str | None = None
    stars: str | None = None  # "4" or a range "1-2"
    verified: bool | None = None
    region: str | None = None  # a province, e.g. "430000"
    sort: str | None = None  # None: relevance with a query, else newest
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def parse(cls, params: Mapping[str, str], *, strict: bool) -> ReviewFilter:
        """From query parameters. strict: a bad value is a BadRequest (the API); else
        it is ignored (pages, where a hand-edited URL should still show something)."""
        values: dict[str, Any] = {"q": " ".join(params.get("q", "").split())[:MAX_QUERY]}
        for name, parse in PARSERS.items():
            raw = params.get(name, "").strip()
            if not raw:
                if strict and name in params:  # the API: `?stage=` is not "any stage"
                    raise _bad(name, raw)
                continue
            try:
                values[name] = parse(raw)
            except ValueError:
                if strict:
                    raise _bad(name, raw) from None
        return cls(**values)

    @property
    def effective_sort(self) -> str:
        if self.sort == "relevance" and not self.q:
            return "newest"
        return self.sort or ("relevance" if self.q else "newest")

    def params(self, **changes: Any) -> dict[str, str]:
        """The non-default query parameters, after `changes` (for links)."""
        f = replace(self, **changes)
        out: dict[str, str] = {}
        for item in fields(f):
            value = getattr(f, item.name)
            if value in (None, "") or (item.name, value) in (("page", 1), ("per_page", PER_PAGE)):
                continue
            out[item.name] = _text(value)
        return out

    def query_string(self, **changes: Any) -> str:
        params = self.params(**changes)
        return "?" + urlencode(params) if params else ""

    def search_query(self) -> SearchQuery:
        lo, hi = star_bounds(self.stars) if self.stars else (None, None)
        return SearchQuery(
            q=self.q,
            insurer=self.insurer,
            stage=self.stage,
            channel=self.channel,
            stars=lo,
            stars_max=hi if hi != lo else None,
            province=self.region,
            verified=self.verified,
            sort=self.effective_sort,
            page=self.page,
            per_page=self.per_page,
        )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- reviews ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    id: str
    insurer_code: str
    insurer_name: str
    stage: str
    channel: str
    stars: int  # 1-5; 3-level ratings: satisfied 5, basically satisfied 3, dissatisfied 1
    level: str | None  # satisfied | basic | dissatisfied for a 3-level rating, when known
    score: int
    verified: bool
    occurred_at: datetime
    branch_name: str | None
    region: str | None
    text: str | None  # masked; None when removed
    removed: bool = False
    removed_at: datetime | None = None
    removed_reason: str | None = None  # the approved takedown's reason
    thread: tuple[replies.ThreadItem, ...] = ()  # the insurer's reply, the follow-up

    @property
    def province(self) -> str | None:
        return self.region[:2] + "0000" if self.region else None

    @property
    def province_name(self) -> str | None:
        return province_name(self.region) if self.region else None

    def as_json(self) -> dict[str, Any]:
        branch = None
        if self.branch_name:
            branch = {"name": self.branch_name, "region": self.region, "province": self.province}
        return {
            "id": self.id,
            "insurer": {"code": self.insurer_code, "name": self.insurer_name},
            "stage": self.stage,
            "channel": self.channel,
            "stars": self.stars,
            "level": self.level,
            "score": self.score,
            "verified": self.verified,
            "occurred_at": timestamp(self.occurred_at),
            "branch": branch,
            "text": self.text,
            "removed": self.removed,
            "removed_at": timestamp(self.removed_at) if self.removed_at else None,
            "removed_reason": self.removed_reason,
            "replies": [t.as_json() for t in self.thread],
        }


def from_doc(doc: ReviewDoc) -> Review:
    """A search hit (only visible texts are documents; the counter is always 3-level)."""
    return Review(
        id=doc.id,
        insurer_code=doc.insurer_code,
        insurer_name=doc.insurer_name,
        stage=doc.stage,
        channel=doc.channel,
        stars=doc.stars,
        level=LEVELS.get(doc.stars) if doc.channel == "counter" else None,
        score=doc.score,
        verified=doc.verified,
        occurred_at=datetime.fromtimestamp(doc.occurred_at, UTC),
        branch_name=doc.branch_name,
        region=doc.region,
        text=mask_text(doc.text),
    )


def _from_row(row: Any) -> Review:
    removed = bool(row.hidden)
    return Review(
        id=row.id,
        insurer_code=row.insurer_code,
        insurer_name=row.insurer_name,
        stage=row.stage,
        channel=row.channel,
        stars=int(row.stars),
        level=LEVELS.get(int(row.stars)) if row.scale == 3 else None,
        score=row.score,
        verified=bool(row.verified),
        occurred_at=utc(row.occurred_at),
        branch_name=row.branch_name,
        region=row.region,
        text=None if removed else mask_text(row.body, policy_patterns(row.policy_format)),
        removed=removed,
        removed_at=utc(row.hidden_at) if removed and row.hidden_at else None,
        removed_reason=row.hidden_reason if removed else None,
    )


@dataclass(frozen=True)
class ReviewPage:
    items: list[Review]
    total: int
    page: int
    per_page: int
    capped: bool = False  # total is a lower bound: there are more than COUNT_CAP
    facets: dict[str, dict[str, int]] | None = field(default=None)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    def as_json(self) -> dict[str, Any]:
        return {
            "reviews": [r.as_json() for r in self.items],
            "page": self.page,
            "per_page": self.per_page,
            "total": self.total,
            "total_is_lower_bound": self.capped,
            "pages": self.pages,
            "facets": self.facets,
        }


LIST_COLUMNS = (
    *(R.id, R.stage, R.channel, R.scale, R.score, R.verified, R.occurred_at),
    *(STARS.label("stars"), T.body, T.hidden, T.hidden_at, T.hidden_reason),
    *(BR.name.label("branch_name"), BR.region),
    *(INS.code.label("insurer_code"), INS.name.label("insurer_name"), INS.policy_format),
)


def _select(f: ReviewFilter, insurer_id: int | None) -> Select[Any]:
    """Ratings with a text (removed ones too), their insurer and branch, filtered."""
    stmt = (
        select(*LIST_COLUMNS)
        .select_from(RATINGS)
        .join(TEXTS, T.rating_id == R.id)
        .join(INSURERS, INS.id == R.insurer_id)
        .outerjoin(BRANCHES, BR.id == R.branch_id)
    )
    if insurer_id is not None:
        # Implied by the join; stated so that ix_ratings_insurer_reviews (partial) serves.
        stmt = stmt.where(R.insurer_id == insurer_id, R.text_hash.is_not(None))
    for column, value in ((R.stage, f.stage), (R.channel, f.channel)):
        if value is not None:
            stmt = stmt.where(column == value)
    if f.stars:
        low, high = star_bounds(f.stars)
        stmt = stmt.where(STARS.between(low, high))
    if f.verified is not None:
        stmt = stmt.where(R.verified == f.verified)
    if f.region:
        stmt = stmt.where(func.substr(BR.region, 1, 2) == f.region[:2])
    return stmt


def count_reviews(conn: Connection, insurer_id: int) -> int:
    """All written reviews of one insurer, removed ones included: kept by triggers in
    insurer_pages (migration 0008), one row instead of a scan of the insurer's texts."""
    return count_reviews_by_insurer(conn, [insurer_id]).get(insurer_id, 0)


def count_reviews_by_insurer(conn: Connection, insurer_ids: list[int]) -> dict[int, int]:
    """count_reviews of several insurers in one query."""
    stmt = (
        select(InsurerPage.insurer_id, func.sum(InsurerPage.reviews))
        .where(InsurerPage.insurer_id.in_(insurer_ids))
        .group_by(InsurerPage.insurer_id)
    )
    return {int(iid): int(n) for iid, n in conn.execute(stmt)}


def _unfiltered(f: ReviewFilter) -> bool:
    return not (f.q or f.stage or f.channel or f.stars or f.region) and f.verified is None


def list_reviews(conn: Connection, f: ReviewFilter, insurer_id: int | None = None) -> ReviewPage:
    """One page of reviews from the database, and how many there are (up to COUNT_CAP)."""
    stmt = _select(f, insurer_id)
    sort = f.effective_sort if f.effective_sort in ORDER else "newest"
    offset = (f.page - 1) * f.per_page
    if offset >= COUNT_CAP:  # lists end where their count does: no deep OFFSET scans
        raise BadRequest(
            "Pages go only as far as the first %(num)s reviews; narrow the filters.",
            field="page",
            code="page_too_deep",
            num=COUNT_CAP,
        )
    rows = conn.execute(stmt.order_by(*ORDER[sort]).limit(f.per_page).offset(offset)).all()
    if insurer_id is not None and _unfiltered(f):  # an insurer's page as first shown
        total = count_reviews(conn, insurer_id)
    else:
        bounded = stmt.with_only_columns(R.id).limit(COUNT_CAP + 1).subquery()
        total = int(conn.execute(select(func.count()).select_from(bounded)).scalar_one())
    return with_threads(
        conn,
        ReviewPage(
            items=[_from_row(row) for row in rows],
            total=min(total, COUNT_CAP),
            page=f.page,
            per_page=f.per_page,
            capped=total > COUNT_CAP,
        ),
    )


def with_threads(conn: Connection, page: ReviewPage) -> ReviewPage:
    """The page with each review's reply thread (one query for the page)."""
    found = replies.threads(conn, [r.id for r in page.items])
    items = [replace(r, thread=tuple(found.get(r.id, ()))) for r in page.items]
    return replace(page, items=items)


def search_reviews(index: SearchIndex, f: ReviewFilter) -> ReviewPage:
    """Full-text search over visible reviews, with facet counts (blocking: the caller
    runs it off the event loop). Raises portal.search.SearchError when the index fails."""
    result = index.search(f.search_query())
    facets = dict(result.facets)
    facets["province"] = province_facets(facets.get("region", {}))
    return ReviewPage(
        items=[from_doc(hit) for hit in result.hits],
        total=min(result.total, COUNT_CAP),
        page=f.page,
        per_page=f.per_page,
        capped=result.total > COUNT_CAP,
        facets=facets,
    )


def province_facets(regions: Mapping[str, int]) -> dict[str, int]:
    """Region facet counts summed per province ("430200": 3 -> "430000": 3)."""
    out: Counter[str] = Counter()
    for region, n in regions.items():
        if region[:2] in PROVINCES:
            out[region[:2] + "0000"] += n
    return dict(sorted(out.items()))


def insurer_provinces(conn: Connection, insurer_id: int) -> list[str]:
    """Provinces where the insurer has branches, as codes like "430000"."""
    stmt = select(BR.region).where(BR.insurer_id == insurer_id).distinct()
    return sorted({region[:2] + "0000" for (region,) in conn.execute(stmt) if region})


def no_reviews(f: ReviewFilter) -> ReviewPage:
    return ReviewPage(items=[], total=0, page=f.page, per_page=f.per_page)


# -- pagination ------------------------------------------------------------------------


@dataclass(frozen=True)
class PageLink:
    number: int | None  # None: a gap in the numbers
    url: str = ""
    current: bool = False


def page_numbers(current: int, last: int, around: int = 2) -> list[int | None]:
    """1 … 4 5 [6] 7 8 … 20: the first, the last and a window around the current page."""
    wanted = {1, last, *range(current - around, current + around + 1)}
    numbers = sorted(n for n in wanted if 1 <= n <= last)
    out: list[int | None] = []
    for n in numbers:
        if out and n - (out[-1] or 0) > 1:
            out.append(None)
        out.append(n)
    return out


def page_links(f: ReviewFilter, page: ReviewPage, base: str) -> dict[str, Any]:
    """Previous, next and numbered links that keep every other filter of the view."""

    def url(n: int) -> str:
        return base + f.query_string(page=n)

    return {
        "prev": url(min(page.page - 1, page.pages)) if page.page > 1 else None,
        "next": url(page.page + 1) if page.has_next else None,
        "pages": [
            PageLink(n, url(n), n == page.page) if n else PageLink(None)
            for n in page_numbers(page.page, page.pages)
        ],
    }
