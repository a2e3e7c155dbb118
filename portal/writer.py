"""Group commit: one writer thread per engine commits the ratings queued meanwhile in
one transaction, and only then answers each caller.

Why: every rating is its own small write transaction. On SQLite each commit is an
fsync (synchronous=FULL, about 4 ms here) and concurrent writers wait for the write
lock in SQLite's busy handler, which sleeps up to 100 ms at a time: with 40 threadpool
threads writing, ingest fell to ~50 ratings/s (docs/performance.md). On PostgreSQL
each commit is a WAL flush and a round trip. One thread that takes every unit of work
waiting in the queue and commits them together pays one lock and one fsync per batch.

Invariants kept (design.md): each unit runs in its own SAVEPOINT, so a unit that
raises (a conflict, a validation error, a lost race) is rolled back alone and its
caller gets the exception; the others commit. A caller's `submit()` returns only after
the batch's COMMIT succeeded; if the COMMIT fails, every caller of that batch gets the
error and nothing of it was stored (a retry with the same idempotency key is safe).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar
from weakref import WeakKeyDictionary, ref

from anyio import to_thread
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from portal import rollups
from portal.prepared import driver_sql

T = TypeVar("T")
MAX_BATCH = 256  # units per transaction
# PostgreSQL: each unit's savepoint that writes is a subtransaction, and past 64 in one
# transaction (PGPROC_MAX_CACHED_SUBXIDS) every other backend's snapshot checks have to
# look them up in pg_subtrans; a batch stays below that.
MAX_BATCH_POSTGRES = 48
# GROUP_COMMIT=1 (the default; `auto` is the same) or 0. Measured on this 2-core machine
# (docs/performance.md, bench/ab_group_commit.py): SQLite counter ingest went from ~250 to
# ~480 req/s with it, because SQLite serialises writers anyway and every COMMIT is an
# fsync. On PostgreSQL it was off until the batch added up its rollup increments
# (rollups.Deferred): before, one thread waiting on each statement's round trip lost to
# concurrent transactions (~115 vs ~170 req/s); after, concurrent transactions queue on
# the shared rollup rows' locks and the batch wins (1 worker 129-165 vs 119-129 req/s,
# 2 workers 162-191 vs 144-148, at half the server CPU per rating).
MODE = os.environ.get("GROUP_COMMIT", "1")
if MODE not in ("1", "0", "auto"):
    raise RuntimeError(f"GROUP_COMMIT must be 1 (or auto) or 0, not {MODE!r}")
ENABLED = MODE != "0"


def enabled(engine: Engine) -> bool:
    return ENABLED


SAVEPOINT, RELEASE, ROLLBACK_TO = (
    "SAVEPOINT group_unit",
    "RELEASE SAVEPOINT group_unit",
    "ROLLBACK TO SAVEPOINT group_unit",
)
IDLE_SECONDS = 1.0  # the thread ends after this long without work (restarted on demand)

_Unit = tuple[Callable[[Connection], Any], "Future[Any]"]


class GroupWriter:
    def __init__(self, engine: Engine) -> None:
        self._engine = ref(engine)  # weak: the registry below must not keep engines alive
        self.max_batch = MAX_BATCH_POSTGRES if engine.dialect.name == "postgresql" else MAX_BATCH
        self.queue: queue.SimpleQueue[_Unit] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.batches = 0  # for tests and benchmarks
        self.units = 0

    def engine(self) -> Engine:
        engine = self._engine()
        assert engine is not None
        return engine

    def submit(self, fn: Callable[[Connection], T]) -> T:
        """Run fn(conn) inside a group-committed transaction; return after COMMIT."""
        if threading.current_thread() is self.thread:  # a unit submitting a unit
            with self.engine().begin() as conn:
                return fn(conn)
        return self.enqueue(fn).result()

    def enqueue(self, fn: Callable[[Connection], T]) -> Future[T]:
        """Queue fn(conn); the future is resolved after the COMMIT of its batch."""
        future: Future[T] = Future()
        with self.lock:
            self.queue.put((fn, future))
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="portal-group-commit", daemon=True
                )
                self.thread.start()
        return future

    def _run(self) -> None:
        while True:
            try:
                first = self.queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self.lock:
                    if self.queue.empty():
                        self.thread = None
                        return
                continue
            units = [first]
            while len(units) < self.max_batch:
                try:
                    units.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit(units)
            except BaseException as err:  # a fault here must not leave callers waiting
                _fail(units, err)

    def _commit(self, units: list[_Unit]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            engine = self._engine()
            if engine is None:  # every caller holds its engine while it waits
                raise RuntimeError("the engine was garbage-collected")
            with engine.begin() as conn:
                # The batch's rollup increments are added up and written once, at its
                # end (portal.rollups.Deferred): a unit's only if its savepoint is kept.
                # The dict itself is kept: after a lost connection, conn.info raises.
                info = conn.info
                deferred = info[rollups.DEFERRED] = rollups.Deferred()
                try:
                    for fn, future in units:
                        if not future.set_running_or_notify_cancel():
                            continue
                        # One fixed savepoint name, issued on the driver: begin_nested()
                        # numbers its savepoints, so SQLAlchemy compiled each one anew.
                        driver_sql(conn, SAVEPOINT)
                        try:
                            result = fn(conn)
                        except BaseException as err:  # this unit only
                            try:
                                driver_sql(conn, ROLLBACK_TO)
                                driver_sql(conn, RELEASE)
                            except BaseException:
                                # The connection itself is gone (a restart): the batch is
                                # lost, and its callers get this cause, not the aftermath.
                                raise err from None
                            deferred.drop()
                            outcomes.append((future, None, err))
                        else:
                            driver_sql(conn, RELEASE)
                            deferred.keep()
                            outcomes.append((future, result, None))
                    deferred.flush(conn)
                finally:
                    info.pop(rollups.DEFERRED, None)  # info outlives the checkout
        except BaseException as err:  # BEGIN or COMMIT failed: nothing was stored
            _fail(units, err)
            return
        self.batches += 1
        self.units += len(outcomes)
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


def _fail(units: list[_Unit], err: BaseException) -> None:
    """Every caller of the batch still waiting gets `err`."""
    for _, future in units:
        if not future.done():
            future.set_exception(err)


_writers: WeakKeyDictionary[Engine, GroupWriter] = WeakKeyDictionary()
_writers_lock = threading.Lock()


_last: tuple[ref[Engine], GroupWriter] | None = None  # the one a process mostly asks for


def writer_for(engine: Engine) -> GroupWriter:
    global _last
    last = _last  # one read: another thread may replace it meanwhile
    if last is not None and last[0]() is engine:
        return last[1]  # without the WeakKeyDictionary's lock and new weakref per call
    with _writers_lock:
        writer = _writers.get(engine)
        if writer is None:
            writer = _writers[engine] = GroupWriter(engine)
        _last = (ref(engine), writer)
        return writer


def group_commit(engine: Engine, fn: Callable[[Connection], T]) -> T:
    """fn(conn) in a transaction shared with other callers' units; returns after COMMIT."""
    if not enabled(engine):
        return _own_transaction(engine, fn)
    return writer_for(engine).submit(fn)


def _own_transaction(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.begin() as conn:
        return fn(conn)


# PostgreSQL's deadlock and serialization failures: the transaction (or the unit's
# savepoint) was rolled back and running it again is the documented answer. Two batches
# of other processes can take an insurer's page-version rows in crossed orders (each
# unit sorts its own), so one of them is sometimes chosen as a deadlock's victim.
RETRY_SQLSTATES = frozenset({"40P01", "40001"})


def _lost_a_race(err: Exception) -> bool:
    """A failure that running the unit again resolves: a unique key a concurrent request
    took first (IntegrityError), or a deadlock or serialization failure."""
    if isinstance(err, IntegrityError):
        return True
    return isinstance(err, DBAPIError) and getattr(err.orig, "sqlstate", None) in RETRY_SQLSTATES


def retrying(engine: Engine, fn: Callable[[Connection], T]) -> T:
    """group_commit(), run once more if the unit lost a race (`_lost_a_race`: on a
    unique key, a concurrent request with the same idempotency key committed first; or
    a deadlock). On the second run the unit finds the stored row: fn must read before
    it writes."""
    for attempt in range(2):
        try:
            return group_commit(engine, fn)
        except DBAPIError as err:
            if attempt or not _lost_a_race(err):
                raise
    raise AssertionError("unreachable")


async def commit(engine: Engine, fn: Callable[[Connection], T]) -> T:
    """retrying(), awaited from the event loop: returns after COMMIT.

    With group commit the unit goes to the writer thread and the request holds no
    threadpool thread while it waits (forty threads blocked on futures cost more in GIL
    hand-offs than the writer saved in fsyncs); without it, fn runs in the threadpool in
    a transaction of its own."""
    for attempt in range(2):
        try:
            if enabled(engine):
                return await asyncio.wrap_future(writer_for(engine).enqueue(fn))
            return await to_thread.run_sync(_own_transaction, engine, fn)
        except DBAPIError as err:
            if attempt or not _lost_a_race(err):
                raise
    raise AssertionError("unreachable")
