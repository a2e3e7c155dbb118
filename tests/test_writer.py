"""Group commit (portal/writer.py): concurrent ratings share a transaction, each in its
own savepoint; a failing one is rolled back alone; a receipt means committed."""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

import pytest
from sqlalchemy import Connection, Engine, bindparam, func, select, text, update
from sqlalchemy.exc import DBAPIError

from portal import rollups, writer
from portal.errors import Conflict, Invalid
from portal.models import Insurer, Rating
from portal.prepared import Prepared
from portal.ratings import record, record_many
from portal.writer import group_commit, writer_for
from tests.factories import CHINA, World, key, make_world, rating_in


@pytest.fixture(scope="module")
def world(engine: Engine) -> World:
    return make_world(engine)


@pytest.fixture(autouse=True)
def group_commit_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "ENABLED", True)  # the default, unless GROUP_COMMIT=0


class Blocker:
    """A unit that holds the writer until released, so the units submitted meanwhile
    queue up behind it and share the next transaction."""

    def __init__(self) -> None:
        self.running, self.gate = threading.Event(), threading.Event()

    def __call__(self, conn: Connection) -> None:
        self.running.set()
        assert self.gate.wait(10), "the test never released the writer"

    def hold(self, pool: ThreadPoolExecutor, engine: Engine) -> Future:
        held = pool.submit(group_commit, engine, self)
        assert self.running.wait(10), "the writer never ran the blocker"
        return held


def _queued(engine: Engine, n: int) -> None:
    """Until n units wait in the writer's queue (the writer itself is held by a Blocker)."""
    deadline = time.monotonic() + 10
    while writer_for(engine).queue.qsize() < n:
        assert time.monotonic() < deadline, "units never reached the writer's queue"
        time.sleep(0.005)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Rating)).scalar_one())


def test_concurrent_ratings_are_committed_in_batches_and_each_acknowledged(
    engine: Engine, world: World
) -> None:
    before = _count(engine)
    writer = writer_for(engine)
    batches = writer.batches
    blocker = Blocker()

    with ThreadPoolExecutor(9) as pool:
        held = blocker.hold(pool, engine)
        futures = [pool.submit(record, engine, rating_in(world, value=1 + i % 5)) for i in range(8)]
        _queued(engine, 8)  # all eight queued behind the blocker
        blocker.gate.set()
        receipts = [f.result() for f in futures]
        held.result()
    assert len({r.id for r in receipts}) == 8
    assert _count(engine) == before + 8
    assert writer.batches - batches < 9  # at least two ratings shared a commit


def test_a_failing_rating_is_rolled_back_alone(engine: Engine, world: World) -> None:
    before = _count(engine)
    dup = key()
    record(engine, rating_in(world, idempotency_key=dup, value=5))
    blocker = Blocker()
    outcomes: list[object] = []

    def attempt(r: object) -> None:
        try:
            outcomes.append(record(engine, r))  # type: ignore[arg-type]
        except (Conflict, Invalid) as err:
            outcomes.append(err)

    with ThreadPoolExecutor(5) as pool:
        blocker.hold(pool, engine)
        futures = [
            pool.submit(attempt, rating_in(world, value=4)),
            pool.submit(attempt, rating_in(world, idempotency_key=dup, value=1)),  # 409
            pool.submit(attempt, rating_in(world, stage="nonsense")),  # 422
            pool.submit(attempt, rating_in(world, value=3)),
        ]
        _queued(engine, 4)
        blocker.gate.set()
        for f in futures:
            f.result()
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert sorted(type(e).__name__ for e in errors) == ["Conflict", "Invalid"]
    assert _count(engine) == before + 1 + 2  # the first, and the two good ones


def test_a_database_error_in_one_unit_leaves_the_batch_and_the_writer_working(
    engine: Engine, world: World
) -> None:
    """A unit whose statement the database refuses (here a duplicate unique key) gets the
    IntegrityError; the units before and after it in the same transaction commit."""
    from sqlalchemy.exc import IntegrityError

    before = _count(engine)
    blocker = Blocker()

    def duplicate(conn: Connection) -> None:
        add = (
            "INSERT INTO insurers (code, name, created_at) VALUES ('ZZDUP', :n, CURRENT_TIMESTAMP)"
        )
        conn.execute(text(add), {"n": "x"})
        conn.execute(text(add), {"n": "y"})  # the unique code: refused

    with ThreadPoolExecutor(5) as pool:
        held = blocker.hold(pool, engine)
        first = pool.submit(record, engine, rating_in(world, value=2))
        _queued(engine, 1)
        bad = pool.submit(group_commit, engine, duplicate)
        _queued(engine, 2)
        last = pool.submit(record, engine, rating_in(world, value=5))
        _queued(engine, 3)
        blocker.gate.set()
        held.result()
        receipts = [first.result(), last.result()]
        with pytest.raises(IntegrityError, match="(?i)unique|duplicate"):
            bad.result()
    assert _count(engine) == before + 2
    with engine.connect() as conn:
        stored = set(conn.execute(select(Rating.id)).scalars())
        dup = conn.execute(text("SELECT count(*) FROM insurers WHERE code = 'ZZDUP'")).scalar()
    assert {r.id for r in receipts} <= stored
    assert dup == 0  # the unit's first insert was rolled back with it


def test_a_units_refused_driver_insert_fails_it_alone_and_leaves_the_connection_fit(
    engine: Engine, world: World
) -> None:
    """A unit whose INSERT on the driver (portal/prepared.py) the database refuses, as
    when a concurrent request took its idempotency key first, fails alone with the
    IntegrityError, whatever it would have run after it. The other units of its batch
    commit; an UPDATE's row count is the real one (it tells a unit that another one
    already took the row); and the connection serves the next batch, including a
    statement used more often than psycopg's threshold for preparing it. psycopg's
    pipeline mode was tried for these batches and broke the first and the last of these
    (docs/performance.md, "Ingest, fourth round")."""
    from sqlalchemy.exc import IntegrityError

    add = Prepared(Insurer.__table__.insert())
    rename = Prepared(
        update(Insurer)
        .where(Insurer.code == bindparam("c"), Insurer.name == "first")
        .values(name=bindparam("n"))
    )
    code = f"ZP{random.randrange(16**8):08x}"
    # A statement new to every pooled connection (its text names this run's code).
    fresh = Prepared(
        text(
            "INSERT INTO insurers (code, name, created_at) "
            f"VALUES (:code, :name, CURRENT_TIMESTAMP) /* {code} */"
        )
    )
    row = {"code": code, "name": "first", "created_at": datetime.now(CHINA)}

    def refused(conn: Connection) -> None:
        add.executemany(conn, [row])  # a code already taken: refused
        for i in range(6):  # more than psycopg's prepare threshold
            fresh.executemany(conn, [{"code": f"{code}-{i}", "name": "never"}])
        rename.execute(conn, {"c": code, "n": "never"})

    def renames(name: str) -> Callable[[Connection], int]:
        return lambda conn: rename.execute(conn, {"c": code, "n": name})

    with engine.begin() as conn:
        add.executemany(conn, [row])
    before = _count(engine)
    blocker = Blocker()
    with ThreadPoolExecutor(5) as pool:
        held = blocker.hold(pool, engine)
        bad = pool.submit(group_commit, engine, refused)
        _queued(engine, 1)
        after = pool.submit(record, engine, rating_in(world, value=4))
        _queued(engine, 2)
        first = pool.submit(group_commit, engine, renames("renamed"))
        _queued(engine, 3)
        second = pool.submit(group_commit, engine, renames("again"))
        _queued(engine, 4)
        blocker.gate.set()
        held.result()
        with pytest.raises(IntegrityError, match="(?i)unique|duplicate"):
            bad.result()
        receipt = after.result()
        assert (first.result(), second.result()) == (1, 0)
    for i in range(3):  # the next batches, on the same pooled connection or another
        group_commit(
            engine, lambda c, i=i: fresh.executemany(c, [{"code": f"{code}+{i}", "name": "n"}])
        )
    assert _count(engine) == before + 1
    with engine.connect() as conn:
        assert conn.execute(select(Rating.id).where(Rating.id == receipt.id)).scalar()
        names = conn.execute(
            select(Insurer.code, Insurer.name).where(Insurer.code.startswith(code))
        ).all()
    assert sorted(names) == [(code, "renamed")] + [(f"{code}+{i}", "n") for i in range(3)]


def test_a_within_failure_rolls_back_its_rating_only(engine: Engine, world: World) -> None:
    before = _count(engine)

    def refuse(conn: Connection, row: dict) -> None:
        raise Conflict("no", code="test")

    with pytest.raises(Conflict):
        record(engine, rating_in(world), within=refuse)
    record(engine, rating_in(world))
    assert _count(engine) == before + 1


def test_a_unit_that_raises_gets_its_error_and_the_writer_goes_on(engine: Engine) -> None:
    def breaks_the_transaction(conn: Connection) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        group_commit(engine, breaks_the_transaction)
    assert group_commit(engine, lambda conn: conn.execute(text("SELECT 1")).scalar()) == 1


@pytest.mark.sqlite_only
def test_the_sqlite_write_lock_is_released_at_commit_and_rollback(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal import db

    monkeypatch.setattr(db, "WRITE_LOCK", True)
    local = db.make_engine(str(engine.url))
    path = str(__import__("pathlib").Path(engine.url.database).resolve())
    lock = db._write_lock(path)
    # Another open file description, as another process would have: it cannot take the
    # flock while a write transaction holds it.
    other = os.open(f"{path}-writer.lock", os.O_RDWR)

    def file_locked() -> bool:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(other, fcntl.LOCK_UN)
        return False

    with local.begin() as conn:
        assert lock.locked() and file_locked()
        conn.execute(text("SELECT 1"))
    assert not lock.locked() and not file_locked()
    with pytest.raises(ZeroDivisionError), local.begin():
        assert lock.locked() and file_locked()
        1 / 0  # noqa: B018
    assert not lock.locked() and not file_locked()
    with local.connect().execution_options(read_only=True) as conn:  # readers never take it
        conn.execute(text("SELECT 1"))
        assert not lock.locked() and not file_locked()
    os.close(other)
    local.dispose()


def test_a_batchs_rollups_count_exactly_its_committed_ratings(engine: Engine, world: World) -> None:
    """The batch adds up its rollup increments and writes them at its end
    (rollups.Deferred): a unit rolled back after its rating's increments were staged
    must not count, and every rollup must still equal the ratings it sums."""
    rng = random.Random()
    day = datetime(rng.randrange(2001, 2010), rng.randrange(1, 13), 15, 10, tzinfo=CHINA)
    rated = [rating_in(world, occurred_at=day, value=1 + i % 5) for i in range(6)]
    blocker = Blocker()

    def then_fail(conn: Connection) -> None:
        record_many(conn, [rating_in(world, occurred_at=day, value=5)])
        raise RuntimeError("the unit fails after its rating's rollups were staged")

    writer = writer_for(engine)
    with ThreadPoolExecutor(9) as pool:
        blocker.hold(pool, engine)
        batches = writer.batches
        good = [
            pool.submit(group_commit, engine, lambda c, r=r: record_many(c, [r])) for r in rated
        ]
        bad = pool.submit(group_commit, engine, then_fail)
        _queued(engine, 7)
        blocker.gate.set()
        receipts = [f.result()[0] for f in good]
        with pytest.raises(RuntimeError):
            bad.result()
    assert writer.batches - batches == 2  # the blocker's batch, then all seven together
    with engine.connect() as conn:
        stored = conn.execute(
            select(func.count(), func.sum(Rating.score)).where(
                Rating.id.in_([r.id for r in receipts])
            )
        ).one()
        assert stored == (6, sum((r.value - 1) * 25 for r in rated))
        for table, when in (
            (rollups.DAILY, rollups.DAILY.c.day == day.date()),
            (rollups.MONTHLY, rollups.MONTHLY.c.month == day.date().replace(day=1)),
            (rollups.STAFF, rollups.STAFF.c.day == day.date()),
            (rollups.STAFF_MONTHLY, rollups.STAFF_MONTHLY.c.month == day.date().replace(day=1)),
        ):
            n, total = conn.execute(
                select(func.sum(table.c.n), func.sum(table.c.sum_score)).where(when)
            ).one()
            assert (n, total) == stored, table.name


def test_a_failed_commit_fails_every_unit_of_its_batch_and_the_writer_goes_on(
    engine: Engine, world: World, is_postgres: bool
) -> None:
    """When the batch itself fails (its COMMIT, or the connection lost mid-batch, as in a
    database restart), every caller gets the error, nothing of the batch is stored, and
    the next rating is written: the writer thread must neither die nor hang its callers."""

    def breaks_the_batch(conn: Connection) -> None:
        if is_postgres:  # the connection is lost under the whole batch
            conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        else:  # a foreign key checked only at COMMIT
            conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            conn.exec_driver_sql(
                "INSERT INTO ledger_queue (rating_id, recorded_at) "
                "VALUES ('no-such-rating', '2026-01-01 00:00:00')"
            )

    before = _count(engine)
    blocker = Blocker()
    pool = ThreadPoolExecutor(5)
    try:
        blocker.hold(pool, engine)
        first = pool.submit(group_commit, engine, lambda c: record_many(c, [rating_in(world)]))
        _queued(engine, 1)
        breaker = pool.submit(group_commit, engine, breaks_the_batch)
        _queued(engine, 2)
        last = pool.submit(group_commit, engine, lambda c: record_many(c, [rating_in(world)]))
        _queued(engine, 3)
        blocker.gate.set()
        for f in (first, breaker, last):
            with pytest.raises(DBAPIError):  # the database's own error, not a timeout
                f.result(timeout=30)
    finally:
        pool.shutdown(wait=False)  # a caller the writer forgot would block the test forever
    assert _count(engine) == before
    record(engine, rating_in(world))  # (record() itself retries once after an IntegrityError)
    assert _count(engine) == before + 1


@pytest.mark.postgres_only
def test_a_unit_chosen_as_a_deadlock_victim_is_run_again(engine: Engine, world: World) -> None:
    """Two transactions taking two rows in crossed orders (as two processes' batches can
    take insurers' page-version rows): PostgreSQL aborts one. When that is a rating's
    unit, it is run again, not answered with an error."""
    with engine.begin() as conn:
        ids = (
            conn.execute(
                select(Insurer.id).where(Insurer.code.in_([world.insurer_a, world.insurer_b]))
            )
            .scalars()
            .all()
        )
        for iid in ids:
            conn.execute(
                text(
                    "INSERT INTO insurer_pages (insurer_id, slot, version, reviews) "
                    "VALUES (:i, 0, 0, 0) ON CONFLICT DO NOTHING"
                ),
                {"i": iid},
            )
    first, second = ids
    bump = text("UPDATE insurer_pages SET version = version + 1 WHERE insurer_id = :i AND slot = 0")
    runs: list[int] = []
    holds_first = threading.Event()

    def unit(conn: Connection) -> int:
        runs.append(1)
        conn.execute(bump, {"i": first})
        holds_first.set()
        conn.execute(bump, {"i": second})  # the first run waits here: a deadlock
        return len(runs)

    other = engine.connect()
    try:
        other.begin()
        other.execute(bump, {"i": second})
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(writer.retrying, engine, unit)
            assert holds_first.wait(10)
            deadline = time.monotonic() + 10
            with engine.connect() as watch:  # until the unit waits for `second`
                while not watch.execute(
                    text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                ).scalar():
                    assert time.monotonic() < deadline, "the unit never waited"
                    time.sleep(0.01)
            # The unit waited first, so its deadlock check runs first and it is the victim.
            other.execute(bump, {"i": first})
            other.commit()
            assert result.result(timeout=30) == 2  # the second run went through
    finally:
        other.close()
    assert len(runs) == 2
