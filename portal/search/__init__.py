"""Search over reviews: one interface, two backends, fed by the outbox (docs/search.md).

index = make_index(settings, engine)     # Meilisearch if MEILI_URL, else SQL
drain(engine, index)                     # outbox -> index (run it in a loop)
index.search(SearchQuery(q="理赔 慢", stage="claim"))
reindex(engine, index)                   # rebuild from the database
"""

from __future__ import annotations

from sqlalchemy import Engine

from portal.config import Settings
from portal.search.base import (
    FACETS,
    SORTS,
    ReviewDoc,
    SearchError,
    SearchIndex,
    SearchQuery,
    SearchResult,
)
from portal.search.outbox import drain, enqueue, pending, run_worker
from portal.search.rebuild import reindex
from portal.search.sql import SqlIndex

__all__ = [
    "FACETS",
    "SORTS",
    "MeiliIndex",
    "ReviewDoc",
    "SearchError",
    "SearchIndex",
    "SearchQuery",
    "SearchResult",
    "SqlIndex",
    "drain",
    "enqueue",
    "make_index",
    "pending",
    "reindex",
    "run_worker",
]


def make_index(settings: Settings, engine: Engine) -> SearchIndex:
    """Meilisearch when MEILI_URL is set, else the SQL fallback. Contacts no server yet,
    so the portal starts even while Meilisearch is down (the outbox catches up later)."""
    if settings.meili_url:
        from portal.search.meili import MeiliIndex

        return MeiliIndex(settings.meili_url, str(settings.meili_key))
    return SqlIndex(engine)


def __getattr__(name: str) -> object:
    # The Meilisearch client (and the requests library under it, ~12 MB per process) is
    # imported only by a portal that uses Meilisearch (docs/performance.md, memory).
    if name == "MeiliIndex":
        from portal.search.meili import MeiliIndex

        return MeiliIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
