"""Meilisearch backend: the production search engine (Chinese segmentation, facets).

Uses the official client on purpose: it opens a new connection per call, which avoids
the ~44 ms Nagle stall a keep-alive client hits against Meilisearch 1.21 (see
performance-notes.md). Every write waits for its task to succeed, so the outbox marks
a row done only once the document is really searchable (or really gone).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import meilisearch
from meilisearch.errors import MeilisearchError
from meilisearch.index import Index
from meilisearch.models.task import Task, TaskInfo

from portal.search.base import FACETS, ReviewDoc, SearchError, SearchQuery, SearchResult

SETTINGS: dict[str, Any] = {
    "searchableAttributes": ["text", "insurer_name"],
    "filterableAttributes": [
        "id",  # only to delete by filter
        "insurer_code",
        "stage",
        "channel",
        "stars",
        "region",
        "province",
        "verified",
    ],
    "sortableAttributes": ["occurred_at", "score"],
    # "sort" first: a chosen order is strict; without one (relevance) the rule is inert.
    "rankingRules": ["sort", "words", "typo", "proximity", "attribute", "exactness"],
    # Kanji-only text can be detected as Japanese and segmented wrongly; say it is Chinese.
    "localizedAttributes": [{"attributePatterns": ["text", "insurer_name"], "locales": ["cmn"]}],
    "faceting": {"maxValuesPerFacet": 1000},  # regions number in the hundreds
    "pagination": {"maxTotalHits": 10000},
}
SORT: dict[str, list[str]] = {
    "newest": ["occurred_at:desc"],
    "oldest": ["occurred_at:asc"],
    "lowest": ["score:asc", "occurred_at:desc"],
    "highest": ["score:desc", "occurred_at:desc"],
    "relevance": [],
}


def filter_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class MeiliIndex:
    """SearchIndex on a Meilisearch server."""

    name = "meilisearch"

    def __init__(
        self,
        url: str,
        key: str,
        uid: str = "reviews",
        *,
        timeout: int = 5,
        task_timeout_ms: int = 30_000,
    ) -> None:
        self.client = meilisearch.Client(url, key or None, timeout=timeout)
        self.uid = uid
        self.task_timeout_ms = task_timeout_ms
        self._ready = False

    def _task(self, info: TaskInfo) -> Task:
        """Poll the task until it finishes; MeilisearchTimeoutError after the deadline.

        A small batch takes a few ms; polling every 10 ms (not the client's 50) keeps the
        outbox worker's transaction, and on SQLite the write lock, short.
        """
        return self.client.wait_for_task(
            info.task_uid, timeout_in_ms=self.task_timeout_ms, interval_in_ms=10
        )

    def _wait(self, info: TaskInfo) -> None:
        done = self._task(info)
        if done.status != "succeeded":
            raise SearchError(f"Meilisearch task {info.task_uid} {done.status}: {done.error}")

    def _index(self) -> Index:
        if not self._ready:
            self.ensure()
        return self.client.index(self.uid)

    def ensure(self) -> None:
        created = self._task(self.client.create_index(self.uid, {"primaryKey": "id"}))
        exists = (created.error or {}).get("code") == "index_already_exists"
        if created.status != "succeeded" and not exists:
            raise SearchError(f"cannot create Meilisearch index {self.uid}: {created.error}")
        self._wait(self.client.index(self.uid).update_settings(SETTINGS))
        self._ready = True

    def index_reviews(self, docs: list[ReviewDoc]) -> None:
        if docs:
            self._wait(self._index().add_documents([asdict(d) for d in docs], primary_key="id"))

    def remove(self, rating_ids: list[str]) -> None:
        if rating_ids:
            # By filter: the client deprecates deleting by a list of ids.
            listed = ", ".join(filter_value(i) for i in rating_ids)
            self._wait(self._index().delete_documents(filter=f"id IN [{listed}]"))

    def ids(self) -> set[str]:
        out: set[str] = set()
        while True:
            params = {"fields": ["id"], "limit": 1000, "offset": len(out)}
            page = self._index().get_documents(params)
            out.update(str(doc.id) for doc in page.results)
            if len(out) >= page.total or not page.results:
                return out

    def healthy(self) -> bool:
        try:
            self._index().fetch_info()  # reachable, our key works, the index exists
        except Exception:
            return False
        return True

    def status(self) -> str:
        """ok; degraded: the server answers but our index or key does not work; down."""
        try:
            self.client.health()  # needs no key
        except Exception:
            return "down"
        return "ok" if self.healthy() else "degraded"

    def search(self, q: SearchQuery) -> SearchResult:
        params: dict[str, Any] = {
            "filter": [f"{k} = {filter_value(v)}" for k, v in q.filters().items()]
            + [f"{k} {lo} TO {hi}" for k, (lo, hi) in q.ranges().items()],
            "facets": list(FACETS.values()),
            "page": q.page,
            "hitsPerPage": q.per_page,
            # AND, like the SQL fallback: the default "last" would also list reviews that
            # match only some words, and with a date sort those mix in with the rest.
            "matchingStrategy": "all",
            "locales": ["cmn"],
        }
        if SORT[q.sort]:
            params["sort"] = SORT[q.sort]
        try:
            raw = self._index().search(q.q, params)
        except MeilisearchError as exc:  # callers handle one error type, whatever the cause
            raise SearchError(str(exc)) from exc
        dist = raw.get("facetDistribution", {})
        facets = {name: dict(sorted(dist.get(field, {}).items())) for name, field in FACETS.items()}
        hits = [ReviewDoc.from_mapping(h) for h in raw["hits"]]
        return SearchResult(hits=hits, total=int(raw.get("totalHits", 0)), facets=facets)
