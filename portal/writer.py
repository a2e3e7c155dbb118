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

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar
from weakref import WeakKeyDictionary, ref

from sqlalchemy import Connection, Engine

T = TypeVar("T")
MAX_BATCH = 256  # units per transaction
# Off by default: measured on a 2-core machine shared with other jobs (load ~15), the
# single writer thread lost more to GIL hand-offs than it saved in fsyncs (counter
# ingest 17 req/s with it, 31 without: docs/performance.md). GROUP_COMMIT=1 turns it on;
# bench/ab_group_commit.py compares the variants on the machine at hand.
ENABLED = os.environ.get("GROUP_COMMIT", "0") == "1"
IDLE_SECONDS = 1.0  # the thread ends after this long without work (restarted on demand)

_Unit = tuple[Callable[[Connection], Any], "Future[Any]"]


class GroupWriter:
    def __init__(self, engine: Engine) -> None:
        self._engine = ref(engine)  # weak: the registry below must not keep engines alive
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
        future: Future[T] = Future()
        with self.lock:
            self.queue.put((fn, future))
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="portal-group-commit", daemon=True
                )
                self.thread.start()
        return future.result()

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
            while len(units) < MAX_BATCH:
                try:
                    units.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(units)

    def _commit(self, units: list[_Unit]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            engine = self._engine()
            if engine is None:  # every caller holds its engine while it waits
                raise RuntimeError("the engine was garbage-collected")
            with engine.begin() as conn:
                for fn, future in units:
                    if not future.set_running_or_notify_cancel():
                        continue
                    savepoint = conn.begin_nested()
                    try:
                        result = fn(conn)
                    except BaseException as err:  # this unit only
                        savepoint.rollback()
                        outcomes.append((future, None, err))
                    else:
                        savepoint.commit()
                        outcomes.append((future, result, None))
        except BaseException as err:  # BEGIN or COMMIT failed: nothing was stored
            for future in {id(f): f for f, _ in units}.values():
                if not future.done():
                    future.set_exception(err)
            return
        self.batches += 1
        self.units += len(outcomes)
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


_writers: WeakKeyDictionary[Engine, GroupWriter] = WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer_for(engine: Engine) -> GroupWriter:
    with _writers_lock:
        writer = _writers.get(engine)
        if writer is None:
            writer = _writers[engine] = GroupWriter(engine)
        return writer


def group_commit(engine: Engine, fn: Callable[[Connection], T]) -> T:
    """fn(conn) in a transaction shared with other callers' units; returns after COMMIT."""
    if not ENABLED:
        with engine.begin() as conn:
            return fn(conn)
    return writer_for(engine).submit(fn)
