"""The outbox worker: lossless through a Meilisearch outage, backoff, concurrent workers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from portal.models import Outbox
from portal.search import MeiliIndex, ReviewDoc, SearchQuery, SearchResult, drain
from portal.search.outbox import BACKOFF_CAP, catch_up, retry_after
from portal.search.server import start
from tests.search.conftest import Add, Shop, ids, require_binary, sync

OUTBOX = Outbox.__table__
LATER = timedelta(days=1)  # far enough that any backoff has passed


def outbox_rows(engine: Engine, refs: list[str]) -> list[Any]:
    with engine.connect() as conn:
        stmt = select(OUTBOX).where(OUTBOX.c.ref.in_(refs)).order_by(OUTBOX.c.id)
        return list(conn.execute(stmt))


def test_meilisearch_outage_delays_indexing_but_loses_nothing(
    engine: Engine, tmp_path: Path, shop: Shop, add: Add
) -> None:
    require_binary()
    server = start(tmp_path / "meili")
    index = MeiliIndex(server.url, server.key)
    index.ensure()
    sync(engine, index)  # others' leftovers, so what follows concerns our rows only
    server.stop()
    rid = add("理赔太慢，客服态度差")
    assert drain(engine, index) == 0
    [row] = outbox_rows(engine, [rid])
    assert (row.done_at, row.attempts) == (None, 1)
    assert "Communication" in row.last_error
    assert drain(engine, index) == 0  # backing off: not retried at once
    assert outbox_rows(engine, [rid])[0].attempts == 1

    server = start(tmp_path / "meili", key=server.key)  # same data, new port
    try:
        revived = MeiliIndex(server.url, server.key)
        assert drain(engine, revived, now=datetime.now(UTC) + LATER) >= 1
        [row] = outbox_rows(engine, [rid])
        assert row.done_at is not None and row.last_error is None
        assert ids(revived.search(SearchQuery(q="理赔", insurer=shop.code))) == [rid]
    finally:
        server.stop()


class Broken:
    """An index that always fails, like a rejected Meilisearch task."""

    name = "broken"

    def ensure(self) -> None: ...
    def index_reviews(self, docs: list[ReviewDoc]) -> None:
        raise RuntimeError("boom")

    def remove(self, rating_ids: list[str]) -> None:
        raise RuntimeError("boom")

    def ids(self) -> set[str]:
        return set()

    def search(self, q: SearchQuery) -> SearchResult:
        raise NotImplementedError

    def healthy(self) -> bool:
        return False


def test_failures_back_off_and_are_retried(engine: Engine, sql_index: Any, add: Add) -> None:
    sync(engine, sql_index)
    rid = add("续保很方便")
    now = datetime.now(UTC)
    assert drain(engine, Broken(), now=now) == 0
    assert drain(engine, Broken(), now=now + timedelta(seconds=retry_after(1) + 1)) == 0
    [row] = outbox_rows(engine, [rid])
    assert (row.attempts, row.last_error, row.done_at) == (2, "RuntimeError: boom", None)
    assert drain(engine, sql_index, now=now + timedelta(seconds=retry_after(2) - 5)) == 0
    assert drain(engine, sql_index, now=now + timedelta(seconds=retry_after(2) + 1)) >= 1
    assert outbox_rows(engine, [rid])[0].done_at is not None


def test_retry_schedule_doubles_then_stays_capped() -> None:
    waits = [retry_after(n) for n in range(12)]
    gaps = [b - a for a, b in zip(waits, waits[1:], strict=False)]
    assert waits[:4] == [0, 5, 15, 35]
    assert gaps == sorted(gaps) and max(gaps) == BACKOFF_CAP


class Slow:
    """Records which refs each call indexed; slow enough for workers to overlap."""

    name = "slow"

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def ensure(self) -> None: ...
    def index_reviews(self, docs: list[ReviewDoc]) -> None:
        time.sleep(0.02)
        with self.lock:
            self.seen.extend(d.id for d in docs)

    def remove(self, rating_ids: list[str]) -> None:
        with self.lock:
            self.seen.extend(rating_ids)

    def ids(self) -> set[str]:
        return set()

    def search(self, q: SearchQuery) -> SearchResult:
        raise NotImplementedError

    def healthy(self) -> bool:
        return True


def test_concurrent_workers_process_each_row_once(engine: Engine, sql_index: Any, add: Add) -> None:
    sync(engine, sql_index)
    made = [add(f"第{i}条", minutes_ago=i) for i in range(30)]
    index = Slow()
    done: list[int] = []

    def worker() -> None:
        while n := drain(engine, index, limit=4):
            done.append(n)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(index.seen) == sorted(made)  # every one, none twice
    assert sum(done) == 30
    assert all(r.done_at is not None for r in outbox_rows(engine, made))


@pytest.mark.parametrize("backend", ["meilisearch", "sql"])
def test_health(backend: str, request: pytest.FixtureRequest) -> None:
    index = request.getfixturevalue(f"{'meili' if backend == 'meilisearch' else 'sql'}_index")
    assert index.healthy()


def test_unreachable_meilisearch_is_unhealthy() -> None:
    from portal.search.server import free_port

    assert not MeiliIndex(f"http://127.0.0.1:{free_port()}", "k", timeout=1).healthy()


def test_the_apps_round_catches_up_with_a_backlog(engine: Engine, sql_index: Any, add: Add) -> None:
    """A backlog larger than one batch is indexed in one round of the app's job (full
    batches go again at once), and a round that indexes nothing stops at once."""
    sync(engine, sql_index)
    made = [add(f"积压第{i}条", minutes_ago=i) for i in range(9)]
    assert catch_up(engine, sql_index, limit=2) == 9
    assert all(r.done_at is not None for r in outbox_rows(engine, made))
    assert catch_up(engine, sql_index, limit=2) == 0
    stuck = [add(f"索引故障第{i}条", minutes_ago=i) for i in range(3)]
    assert catch_up(engine, Broken(), limit=2) == 0  # the first failed batch ends the round
    assert sum(r.attempts for r in outbox_rows(engine, stuck)) == 2
