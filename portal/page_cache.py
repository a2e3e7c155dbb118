"""Rendered HTML of the user-independent parts of an insurer's page, per worker process.

Rendering an insurer page costs ~15 ms of CPU before any query (docs/performance.md),
and what it shows changes far less often than it is asked for. So the HTML of its
public parts (the figures, the trend, a page of reviews for one filter, in one locale)
is kept here, and only the shell around it (the header with the visitor's login and
CSRF token) is rendered per request.

Correctness does not rely on invalidating anything in process: there are several
workers, and writes also come from the CLI or plain SQL. Each entry carries the data
version it was rendered at (`insurer_pages.version`, bumped by database triggers in the
same transaction as every write the page shows: migration 0008), and a lookup hits only
when the version just read for this request is the same. The version is read *before*
the data a miss renders from, so an entry is never older than the version it is stored
under: a write committed in between only makes it newer, and the next request reads the
new version and renders again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, func, select, text

from portal.insurer_stats import insurer_code, unknown_insurer
from portal.models import Insurer, InsurerPage
from portal.prepared import Prepared

Blocks = dict[str, str]  # block name -> rendered HTML
SLOTS = 64  # PostgreSQL's version rows per insurer (migration 0008 uses the same number)


def _size(blocks: Blocks) -> int:
    return sum(len(html) for html in blocks.values())


@dataclass(frozen=True)
class PageVersion:
    insurer_id: int
    code: str  # as stored (the URL may have it in lower case)
    version: int


# Built once and run on the driver (portal/prepared.py): it runs on every page view,
# cached or not, and building a statement costs more CPU than SQLite takes to answer it.
_VERSION = Prepared(
    select(Insurer.id, Insurer.code, func.coalesce(func.sum(InsurerPage.version), 0))
    .outerjoin(InsurerPage, InsurerPage.insurer_id == Insurer.id)
    .where(Insurer.code == bindparam("code"))
    .group_by(Insurer.id, Insurer.code)
)


def page_version(conn: Connection, code: str) -> PageVersion:
    """The insurer and the data version of its page, in one indexed query."""
    row = _VERSION.first(conn, {"code": insurer_code(code)})
    if row is None:
        raise unknown_insurer(code)
    return PageVersion(int(row[0]), str(row[1]), int(row[2]))


def lock_versions(conn: Connection, insurer_ids: Iterable[int]) -> None:
    """Lock these insurers' version rows first, in a fixed order (PostgreSQL; SQLite has
    one writer at a time). A rating's triggers bump the row from its text insert, and
    again from its rollup upsert: without this, a rating with a text (version, then a
    rollup row) and one without (the same rollup row, then the version) could deadlock,
    and so could two batches naming insurers in different orders."""
    ids = sorted(set(insurer_ids))
    if conn.dialect.name != "postgresql" or not ids:
        return
    # This transaction's slot rows (the ones its triggers will bump), created if missing
    # and locked in insurer order by bumping them now: harmless, a version only grows.
    _LOCK_SLOTS.executemany(conn, [{"iid": iid} for iid in ids])


_LOCK_SLOTS = Prepared(
    text(
        "INSERT INTO insurer_pages (insurer_id, slot, version, reviews) "
        f"VALUES (:iid, (txid_current() % {SLOTS})::integer, 1, 0) "
        "ON CONFLICT (insurer_id, slot) DO UPDATE SET version = insurer_pages.version + 1"
    )
)


class PageCache:
    """A least-recently-used map of HTML, bounded in bytes, one entry per key whatever
    its version (a new version replaces the old entry instead of piling up)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[int, Blocks]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, version: int) -> Blocks | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, version: int, blocks: Blocks) -> None:
        size = _size(blocks)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= _size(old[1])
            self._entries[key] = (version, blocks)
            self._size += size
            while self._size > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._size -= _size(evicted)

    def __len__(self) -> int:
        return len(self._entries)
