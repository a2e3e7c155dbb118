"""`reindex`: rebuild a search index from the database, without taking search offline.

Documents are upserted in place batch by batch (searches keep answering), then the
index's leftovers (ratings whose text was hidden, say) are removed. The outbox is left
alone: rows still pending are harmless to replay, because the worker always indexes
the current state of a rating.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import click
from sqlalchemy import Engine

from portal.search import documents
from portal.search.base import SearchIndex


class _Bar(Protocol):
    def update(self, n_steps: int) -> None: ...


class _NoBar:
    def update(self, n_steps: int) -> None:
        pass


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[_Bar]:
    if not enabled:
        yield _NoBar()
        return
    with click.progressbar(length=total, label="Indexing reviews", file=sys.stderr) as bar:
        yield bar


def _prune(engine: Engine, index: SearchIndex, seen: set[str]) -> int:
    """Remove what the index holds but the database no longer shows."""
    stale = index.ids() - seen
    if not stale:
        return 0
    # A rating indexed by the outbox worker during the rebuild is not stale: re-check.
    with engine.connect() as conn:
        still_visible = {d.id for d in documents.load(conn, stale)}
    gone = sorted(stale - still_visible)
    for batch in documents.chunks(gone):
        index.remove(batch)
    return len(gone)


def reindex(engine: Engine, index: SearchIndex, progress: bool = False) -> int:
    """Make the index hold exactly the visible reviews; returns how many it holds."""
    index.ensure()
    seen: set[str] = set()
    with _progress(progress, documents.count(engine)) as bar:
        for batch in documents.batches(engine):
            index.index_reviews(list(batch))
            seen.update(d.id for d in batch)
            bar.update(len(batch))
    _prune(engine, index, seen)
    return len(seen)
