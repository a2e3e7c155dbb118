"""The search fallback when no Meilisearch is configured: plain SQL over the live tables.

Hits, filters, facets and visibility come straight from ratings + rating_texts, so a
hidden text disappears at once and a redacted one is shown redacted. Text matching:
every whitespace-separated term must occur (AND), in the review or the insurer name.
On SQLite, terms of 3+ characters are narrowed by the FTS5 trigram index first; shorter
ones (most Chinese words) use LIKE on rating_texts, because trigram MATCH (and even
LIKE on the FTS5 table itself, in SQLite 3.40) finds nothing for them.
On PostgreSQL the app role may not create tables or extensions, so it is ILIKE alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, or_, select, text

from portal.search import fts
from portal.search.base import (
    FACETS,
    ReviewDoc,
    SearchQuery,
    SearchResult,
    joined_connection,
)
from portal.search.documents import COLUMNS, R, review_select, to_doc

ORDER: dict[str, list[Any]] = {
    "newest": [R.occurred_at.desc(), R.id.desc()],
    "oldest": [R.occurred_at.asc(), R.id.asc()],
    "lowest": [R.score.asc(), R.occurred_at.desc(), R.id.desc()],
    "highest": [R.score.desc(), R.occurred_at.desc(), R.id.desc()],
    "relevance": [R.occurred_at.desc(), R.id.desc()],  # no ranking here: newest first
}


DIGIT_RUN = re.compile(r"\d{3,}")


class SqlIndex:
    """SearchIndex over the portal's own database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.fts = engine.dialect.name == "sqlite"
        self.name = "sqlite-fts5" if self.fts else "sql"
        self._ready = False

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """The outbox worker's transaction when it has one open, else a new one."""
        conn = joined_connection()
        if conn is not None and conn.engine is self.engine:
            yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    def ensure(self) -> None:
        if self.fts and not self._ready:
            with self._write() as conn:
                fts.create(conn)
        self._ready = True

    def index_reviews(self, docs: list[ReviewDoc]) -> None:
        if self.fts and docs:
            self.ensure()
            with self._write() as conn:
                fts.upsert(conn, docs)

    def remove(self, rating_ids: list[str]) -> None:
        if self.fts and rating_ids:
            self.ensure()
            with self._write() as conn:
                fts.delete(conn, rating_ids)

    def ids(self) -> set[str]:
        if not self.fts:
            return set()  # nothing stored: searches read the live tables
        self.ensure()
        with self.engine.connect() as conn:
            return fts.ids(conn)

    def healthy(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def search(self, q: SearchQuery) -> SearchResult:
        self.ensure()
        where = [*self._filters(q), *(self._term(t) for t in q.terms)]
        base = review_select().where(*where)
        page = base.order_by(*ORDER[q.sort]).limit(q.per_page).offset(q.offset)
        with self.engine.connect() as conn:
            hits = [to_doc(row) for row in conn.execute(page)]
            total, facets = self._facets(conn, base)
        return SearchResult(hits=hits, total=total, facets=facets)

    def _filters(self, q: SearchQuery) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        for name, value in q.filters().items():
            if name == "province":
                out.append(func.substr(COLUMNS["region"], 1, 2) == str(value)[:2])
            else:
                out.append(COLUMNS[name] == value)
        for name, (low, high) in q.ranges().items():
            out.append(COLUMNS[name].between(low, high))
        return out

    def _term(self, term: str) -> ColumnElement[bool]:
        if DIGIT_RUN.search(term):
            # LIKE reads the stored text, which is not masked: a digit run could confirm a
            # masked phone or ID number digit by digit. Such terms match insurer names only.
            return COLUMNS["insurer_name"].icontains(term, autoescape=True)
        body = COLUMNS["text"].icontains(term, autoescape=True)
        if self.fts and len(term) >= fts.MIN_TERM:
            # The index narrows; LIKE on the live text confirms (the index may be stale).
            body = and_(R.id.in_(fts.matching(term)), body)
        return or_(body, COLUMNS["insurer_name"].icontains(term, autoescape=True))

    def _facets(self, conn: Connection, base: Any) -> tuple[int, dict[str, dict[str, int]]]:
        """Exact counts over all matches: one GROUP BY over the facet columns."""
        sub = base.subquery()
        cols = [sub.c[field] for field in FACETS.values()]
        rows = conn.execute(select(*cols, func.count()).group_by(*cols)).all()
        counters: dict[str, Counter[str]] = {name: Counter() for name in FACETS}
        total = 0
        for row in rows:
            n = row[-1]
            total += n
            for name, value in zip(FACETS, row[:-1], strict=True):
                if value is not None:
                    counters[name][facet_key(value)] += n
        return total, {name: dict(sorted(c.items())) for name, c in counters.items()}


def facet_key(value: Any) -> str:
    """Facet values as Meilisearch spells them: booleans lower-case, numbers as digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
