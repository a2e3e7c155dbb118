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

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select, text
from sqlalchemy.exc import DBAPIError

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
    return _page_version(row)


def _page_version(row: Any) -> PageVersion:
    return PageVersion(int(row[0]), str(row[1]), int(row[2]))


class LoopVersions:
    """Page versions for the event loop, on SQLite, without a thread or a pooled connection.

    Reading the version through `Portal.read` (a threadpool hop, a pool checkout, BEGIN
    and ROLLBACK) cost ~0.4 ms of CPU, a third of a cached page. SQLite says, per
    connection, whether another connection committed anything since it last asked
    (`PRAGMA data_version`, a read of the WAL index: microseconds). So one connection of
    this process, used only here and only for reads, asks that first; while nothing was
    committed, the versions it read before still hold and no query runs. After a commit
    it reads the asked-for version again, on the same connection: a single indexed
    SELECT. Order matters as in `page_version`: data_version is read before the version,
    so a version is never remembered under an older data_version than it was read after.

    `get` returns None when it cannot answer at once (the database is busy: WAL recovery,
    a checkpoint restart); the caller then reads through the threadpool as before.
    """

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect
        self.path = engine.url.database or ""
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._seen: int | None = None
        self._known: dict[str, PageVersion] = {}
        self._inherited: list[sqlite3.Connection] = []
        self.queries = 0  # version queries run (for tests)

    @classmethod
    def for_engine(cls, engine: Engine) -> LoopVersions | None:
        """One for a SQLite file database; None for PostgreSQL (a query on the event loop
        would wait for the network) and in-memory databases (not shared)."""
        path = engine.url.database or ""
        if engine.dialect.name != "sqlite" or path in ("", ":memory:"):
            return None
        return cls(engine)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid != os.getpid():
            # Inherited through a fork: SQLite's connections must not be closed (or used)
            # across one, so it is kept, unused, instead of being collected.
            self._inherited.append(self._conn)
            self._conn = None
        if self._conn is None:
            # timeout=0: never wait in SQLite's busy handler on the event loop.
            conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA trusted_schema=OFF")
            self._conn, self._pid, self._seen = conn, os.getpid(), None
        return self._conn

    def get(self, code: str) -> PageVersion | None:
        code = insurer_code(code)
        with self._lock:
            try:
                conn = self._connection()
                seen = conn.execute("PRAGMA data_version").fetchone()[0]
                if seen != self._seen:
                    self._known.clear()
                    self._seen = seen
                found = self._known.get(code)
                if found is None:
                    self.queries += 1
                    rows = _VERSION.rows_on(conn, self.dialect, {"code": code})
                    if not rows:
                        raise unknown_insurer(code)
                    found = self._known[code] = _page_version(rows[0])
                return found
            except (sqlite3.Error, DBAPIError):
                self.close()  # opened afresh next time
                return None

    def close(self) -> None:
        conn, self._conn, self._seen = self._conn, None, None
        self._known.clear()
        if conn is not None:
            conn.close()


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
