"""The outbox worker: carries committed rating changes into the search index.

`portal.ratings.record` writes an outbox row (topic "rating", ref = rating id) in the
rating's own transaction, and so must anything that hides or redacts a text
(`enqueue`). `drain` re-reads each referenced rating from the database and makes the
index agree: visible text -> upsert, otherwise -> remove. A row is marked done only
after the index confirmed the change, so an outage delays indexing but loses nothing
(design.md invariant 4). Reading the current state, not the event, makes retries and
duplicates harmless.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Table,
    case,
    extract,
    func,
    literal,
    or_,
    select,
    text,
    update,
)

from portal.db import reading
from portal.models import Outbox
from portal.search.base import SearchIndex, joined
from portal.search.documents import load

log = logging.getLogger(__name__)
OUTBOX: Table = Outbox.__table__  # type: ignore[assignment]
OB = OUTBOX.c
TOPIC = "rating"
BACKOFF_BASE = 5  # seconds before the first retry; doubling up to BACKOFF_CAP apart
BACKOFF_CAP = 600
DOUBLINGS = 7  # 5 s * 2**7 > BACKOFF_CAP: from here on retries are BACKOFF_CAP apart
LOCK_REFS = text(
    "SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k WHERE pg_try_advisory_xact_lock(k)"
)


def enqueue(conn: Connection, rating_ids: Iterable[str]) -> None:
    """Ask for re-indexing, in the caller's transaction (e.g. when a text is hidden)."""
    now = datetime.now(UTC)
    rows = [{"topic": TOPIC, "ref": rid, "created_at": now} for rid in dict.fromkeys(rating_ids)]
    if rows:
        conn.execute(OUTBOX.insert(), rows)


def retry_after(attempts: int) -> int:
    """Seconds after creation before attempt number `attempts + 1` is due."""
    steps = [min(BACKOFF_BASE * 2**k, BACKOFF_CAP) for k in range(min(attempts, DOUBLINGS))]
    return sum(steps) + max(0, attempts - DOUBLINGS) * BACKOFF_CAP


def _due(conn: Connection, now: datetime) -> ColumnElement[bool]:
    # The table has no "last tried" column, so the schedule counts from created_at.
    at = literal(now, DateTime(timezone=True))
    if conn.dialect.name == "postgresql":
        age: Any = extract("epoch", at - OB.created_at)
    else:
        age = (func.julianday(at) - func.julianday(OB.created_at)) * 86400.0
    wait = case(
        *((OB.attempts == n, retry_after(n)) for n in range(1, DOUBLINGS + 1)),
        else_=retry_after(DOUBLINGS) + (OB.attempts - DOUBLINGS) * BACKOFF_CAP,
    )
    return or_(OB.attempts == 0, age >= wait)


def _ref_key(ref: str) -> int:
    digest = hashlib.blake2b(f"search:{ref}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _claim(conn: Connection, limit: int, now: datetime) -> Sequence[Any]:
    """Due rows, locked for this worker until its transaction ends."""
    stmt = (
        select(OB.id, OB.ref)
        .where(OB.topic == TOPIC, OB.done_at.is_(None), _due(conn, now))
        .order_by(OB.id)
        .limit(limit)
    )
    if conn.dialect.name != "postgresql":
        return conn.execute(stmt).all()  # SQLite: BEGIN IMMEDIATE already serialises workers
    rows = conn.execute(stmt.with_for_update(skip_locked=True)).all()
    # Two rows about one rating (say "recorded", then "hidden") must not be indexed by
    # two workers at once: the one that read the older state could write last.
    keys = {r.ref: _ref_key(r.ref) for r in rows}
    held = set(conn.execute(LOCK_REFS, {"keys": sorted(set(keys.values()))}).scalars())
    return [r for r in rows if keys[r.ref] in held]


def _apply(conn: Connection, index: SearchIndex, refs: list[str]) -> None:
    docs = load(conn, refs)
    visible = {d.id for d in docs}
    with conn.begin_nested(), joined(conn):
        index.index_reviews(docs)
        index.remove([r for r in refs if r not in visible])


def drain(
    engine: Engine, index: SearchIndex, limit: int = 500, *, now: datetime | None = None
) -> int:
    """Process due outbox rows; returns how many were done. `now` is for tests."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if engine.dialect.name == "sqlite" and index.name == "meilisearch":
        return _drain_unlocked(engine, index, limit, now)
    with engine.begin() as conn:
        rows = _claim(conn, limit, now)
        if not rows:
            return 0
        ids = [r.id for r in rows]
        try:
            _apply(conn, index, sorted({r.ref for r in rows}))
        except Exception as exc:
            log.warning("search indexing failed for %d outbox rows: %s", len(ids), exc)
            error = f"{type(exc).__name__}: {exc}"[:2000]
            conn.execute(
                update(OUTBOX)
                .where(OB.id.in_(ids))
                .values(attempts=OB.attempts + 1, last_error=error)
            )
            return 0
        conn.execute(update(OUTBOX).where(OB.id.in_(ids)).values(done_at=now, last_error=None))
    return len(ids)


def _drain_unlocked(engine: Engine, index: SearchIndex, limit: int, now: datetime) -> int:
    """SQLite with a remote index: never hold the database's single write lock while
    waiting for Meilisearch (rating writers would queue behind the network call).
    Read, index, then mark done briefly. A file lock beside the database keeps two
    workers (uvicorn processes) from interleaving an older and a newer state of one
    rating; whoever does not get it simply tries again on its next round."""
    lock_path = f"{engine.url.database}.outbox-lock"
    with open(lock_path, "a") as lock:  # noqa: PTH123
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        return _drain_locked_file(engine, index, limit, now)


def _drain_locked_file(engine: Engine, index: SearchIndex, limit: int, now: datetime) -> int:
    with reading(engine) as conn:
        rows = _claim(conn, limit, now)
        if not rows:
            return 0
        refs = sorted({r.ref for r in rows})
        docs = load(conn, refs)
    ids = [r.id for r in rows]
    try:
        index.index_reviews(docs)
        index.remove([r for r in refs if r not in {d.id for d in docs}])
    except Exception as exc:
        log.warning("search indexing failed for %d outbox rows: %s", len(ids), exc)
        with engine.begin() as conn:
            conn.execute(
                update(OUTBOX)
                .where(OB.id.in_(ids))
                .values(attempts=OB.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000])
            )
        return 0
    with engine.begin() as conn:
        conn.execute(
            update(OUTBOX)
            .where(OB.id.in_(ids), OB.done_at.is_(None))
            .values(done_at=now, last_error=None)
        )
    return len(ids)


def pending(engine: Engine) -> int:
    """Rows not yet done (for /healthz and operators)."""
    with engine.connect() as conn:
        stmt = select(func.count()).where(OB.topic == TOPIC, OB.done_at.is_(None))
        return int(conn.execute(stmt).scalar_one())


def catch_up(engine: Engine, index: SearchIndex, limit: int = 500, rounds: int = 20) -> int:
    """drain() again at once while it finds a full batch, up to `rounds` batches: the
    app's round every 2 s would otherwise index at most `limit` rows per round, and fall
    ever further behind a sustained 250+ ratings/s (docs/performance.md)."""
    total = 0
    for _ in range(rounds):
        done = drain(engine, index, limit)
        total += done
        if done < limit:
            break
    return total


def run_worker(
    engine: Engine,
    index: SearchIndex,
    stop: threading.Event,
    interval: float = 1.0,
    limit: int = 500,
) -> None:
    """Drain until `stop` is set; full batches go again at once, otherwise wait."""
    failures = 0
    while not stop.is_set():
        try:
            done = drain(engine, index, limit)
            failures = 0
        except Exception:  # the database itself: keep the worker alive, back off
            log.exception("outbox drain failed")
            done, failures = 0, failures + 1
        if done < limit:
            stop.wait(min(interval * 2**failures, 60.0))
