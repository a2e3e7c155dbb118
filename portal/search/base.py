"""The search contract both backends implement: documents, queries, results, the index.

Everything here is plain data so the web layer, the CLI and the tests can build
queries without knowing which backend answers them (design.md "Search").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from sqlalchemy import Connection

SORTS = ("newest", "oldest", "lowest", "highest", "relevance")
# Facet name -> document field. Names are what the web layer shows; fields are stored.
FACETS = {
    "insurer": "insurer_code",
    "stage": "stage",
    "channel": "channel",
    "stars": "stars",
    "region": "region",
    "verified": "verified",
}
MAX_PER_PAGE = 100
MAX_QUERY = 200  # characters; longer input is cut, not rejected
MAX_TERMS = 10  # bounds the SQL fallback's query size


class SearchError(RuntimeError):
    """The search backend refused or failed an operation (outbox rows stay pending)."""


@dataclass(frozen=True)
class ReviewDoc:
    """One searchable review: a rating that has a visible text."""

    id: str
    insurer_code: str
    insurer_name: str
    branch_name: str | None
    region: str | None  # GB/T 2260, 6 digits
    province: str | None  # region[:2] + "0000"
    stage: str
    channel: str
    stars: int  # 1-5; the 3-level scale maps to 5, 3, 1
    score: int  # 0-100
    verified: bool
    text: str
    occurred_at: int  # unix seconds

    @classmethod
    def from_mapping(cls, data: Any) -> ReviewDoc:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def stars_of(scale: int, value: int) -> int:
    """5-point values are stars; 3-level: satisfied 5, basically satisfied 3, dissatisfied 1."""
    return value if scale == 5 else {1: 5, 2: 3}.get(value, 1)


def province_of(region: str | None) -> str | None:
    return region[:2] + "0000" if region else None


def split_terms(q: str) -> list[str]:
    """Whitespace- and punctuation-separated terms, NFC, without duplicates."""
    q = unicodedata.normalize("NFC", q)
    cleaned = "".join(" " if unicodedata.category(c)[0] in "PZC" else c for c in q)
    return list(dict.fromkeys(cleaned.split()))[:MAX_TERMS]


def _flag(value: bool | str) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


@dataclass(frozen=True)
class SearchQuery:
    q: str = ""
    insurer: str | None = None
    stage: str | None = None
    channel: str | None = None
    stars: int | None = None
    stars_max: int | None = None  # with stars: the range stars..stars_max
    region: str | None = None
    province: str | None = None
    verified: bool | None = None
    sort: str = "newest"
    page: int = 1
    per_page: int = 20

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ValueError(f"unknown sort {self.sort!r}; use one of {', '.join(SORTS)}")
        # Values often come straight from a URL: normalise here so that both backends
        # compare like with like (an int column against "5" is an error on PostgreSQL).
        normal = {
            "q": self.q.strip()[:MAX_QUERY],
            "page": max(1, int(self.page)),  # clamping is kinder than an error page
            "per_page": min(MAX_PER_PAGE, max(1, int(self.per_page))),
            "stars": None if self.stars is None else int(self.stars),
            "stars_max": None if self.stars_max is None else int(self.stars_max),
            "verified": None if self.verified is None else _flag(self.verified),
            "province": self.province and self.province[:2] + "0000",
        }
        for name, value in normal.items():
            object.__setattr__(self, name, value)

    @property
    def terms(self) -> list[str]:
        return split_terms(self.q)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def filters(self) -> dict[str, Any]:
        """Set filters as {document field: value}."""
        given = {
            "insurer_code": self.insurer,
            "stage": self.stage,
            "channel": self.channel,
            "stars": self.stars if self.stars_max is None else None,
            "region": self.region,
            "province": self.province,
            "verified": self.verified,
        }
        return {k: v for k, v in given.items() if v is not None}

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Range filters as {document field: (low, high)}, both included."""
        if self.stars is not None and self.stars_max is not None:
            return {"stars": (self.stars, self.stars_max)}
        return {}


@dataclass(frozen=True)
class SearchResult:
    hits: list[ReviewDoc]
    total: int  # may be an estimate (Meilisearch caps exhaustive counts)
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


class SearchIndex(Protocol):
    name: str  # "meilisearch", "sqlite-fts5" or "sql"

    def ensure(self) -> None: ...
    def index_reviews(self, docs: list[ReviewDoc]) -> None: ...
    def remove(self, rating_ids: list[str]) -> None: ...
    def ids(self) -> set[str]: ...  # what the index holds; reindex prunes the rest
    def search(self, q: SearchQuery) -> SearchResult: ...
    def healthy(self) -> bool: ...


# The outbox worker holds a database transaction while it indexes. A SQL-backed index
# must write inside that same transaction: on SQLite a second one would wait for the
# first one's write lock, which is held by the very caller waiting on us.
_joined: ContextVar[Connection | None] = ContextVar("search_joined_connection", default=None)


@contextmanager
def joined(conn: Connection) -> Iterator[None]:
    token = _joined.set(conn)
    try:
        yield
    finally:
        _joined.reset(token)


def joined_connection() -> Connection | None:
    return _joined.get()
