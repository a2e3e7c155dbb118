"""Statements run on the driver (portal/prepared.py) store and read values exactly as
SQLAlchemy does, run in the caller's transaction, and fail as SQLAlchemy would."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.exc import IntegrityError

from portal.canonical import utc
from portal.models import Insurer, LedgerQueue, Outbox, RollupDaily
from portal.prepared import Prepared
from portal.writer import retrying
from tests.factories import World, make_world

OUTBOX = Outbox.__table__
INSERT_OUTBOX = Prepared(OUTBOX.insert())
OUTBOX_BY_REF = Prepared(select(OUTBOX).where(OUTBOX.c.ref == bindparam("ref")))


@pytest.fixture(scope="module")
def world(engine: Engine) -> World:
    return make_world(engine)


def test_an_insert_reads_back_as_sqlalchemy_wrote_it(engine: Engine) -> None:
    ref = secrets.token_hex(8)
    at = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    with engine.connect() as conn, conn.begin():
        # attempts is left out: its column default (0) is stored, as Core would.
        INSERT_OUTBOX.execute(conn, {"topic": "rating", "ref": ref, "created_at": at})
        core = conn.execute(select(OUTBOX).where(OUTBOX.c.ref == ref)).one()
        driver = OUTBOX_BY_REF.first(conn, {"ref": ref})
        assert (core.topic, core.attempts, utc(core.created_at)) == ("rating", 0, at)
        assert tuple(driver) == tuple(core)
        assert driver._asdict()["created_at"] == core.created_at
        conn.rollback()


def test_dates_and_booleans_keep_their_types(engine: Engine, world: World) -> None:
    """A rollup row written on the driver is found by SQLAlchemy's own date and boolean
    comparisons (on SQLite both are stored as text and 0/1: the formats must match)."""
    table = RollupDaily.__table__
    day = date(2001, 2, 3)
    with engine.connect() as conn:
        insurer_id = conn.execute(
            select(Insurer.id).where(Insurer.code == world.insurer_a)
        ).scalar()
    row = dict(
        day=day, insurer_id=insurer_id, branch_id=0, stage="claim", channel="web",
        verified=True, n=1, sum_score=75, sum_sq=5625, top=0, bottom=0,
    )  # fmt: skip
    with engine.connect() as conn, conn.begin():
        Prepared(table.insert()).execute(conn, row)
        found = conn.execute(
            select(table.c.day, table.c.verified, table.c.sum_score).where(
                table.c.day == day, table.c.verified.is_(True),
                table.c.insurer_id == insurer_id,
            )
        ).all()  # fmt: skip
        assert found == [(day, True, 75)]
        read = Prepared(select(table.c.day, table.c.verified).where(table.c.day == day))
        assert [tuple(r) for r in read.rows(conn, {})] == [(day, True)]
        conn.rollback()


def test_a_refused_row_raises_sqlalchemys_integrity_error(engine: Engine) -> None:
    """The writer retries on sqlalchemy.exc.IntegrityError: the driver's own exception
    class must not leak, or a lost race would become a 500."""
    queue = Prepared(LedgerQueue.__table__.insert())
    row = {"rating_id": "no-such-rating", "recorded_at": datetime.now(UTC)}
    with pytest.raises(IntegrityError), engine.connect() as conn, conn.begin():
        queue.execute(conn, row)  # a foreign key to a rating that does not exist
    runs = []

    def unit(conn):
        runs.append(1)
        queue.execute(conn, row)

    with pytest.raises(IntegrityError):
        retrying(engine, unit)
    assert len(runs) == 2  # retried once, as for a lost unique-key race


def test_it_runs_in_the_callers_transaction(engine: Engine) -> None:
    ref = secrets.token_hex(8)
    row = {"topic": "rating", "ref": ref, "created_at": datetime.now(UTC)}
    with pytest.raises(RuntimeError), engine.begin() as conn:
        INSERT_OUTBOX.execute(conn, row)
        raise RuntimeError("the caller fails after the insert")
    with engine.connect() as conn:
        assert OUTBOX_BY_REF.first(conn, {"ref": ref}) is None  # rolled back with it
    with engine.begin() as conn:
        INSERT_OUTBOX.executemany(
            conn, [row, row | {"created_at": row["created_at"] + timedelta(1)}]
        )
    with engine.connect() as conn:
        assert len(OUTBOX_BY_REF.rows(conn, {"ref": ref})) == 2


def test_a_missing_parameter_is_named_and_nothing_runs(engine: Engine) -> None:
    ref = secrets.token_hex(8)
    with engine.connect() as conn, conn.begin():
        with pytest.raises(KeyError, match="created_at"):
            Prepared(OUTBOX.insert()).executemany(
                conn, [{"topic": "rating", "ref": ref, "created_at": datetime.now(UTC)},
                       {"topic": "rating", "ref": ref}],
            )  # fmt: skip
        with pytest.raises(KeyError, match="'ref'"):
            OUTBOX_BY_REF.rows(conn, {})
        assert OUTBOX_BY_REF.first(conn, {"ref": ref}) is None


def test_without_a_begin_it_is_rolled_back_unless_committed(engine: Engine) -> None:
    """As Connection.execute() would: the first statement begins a transaction, which
    closing the connection without commit() rolls back (SQLite's driver would otherwise
    have stored the row at once, in autocommit)."""
    ref = secrets.token_hex(8)
    row = {"topic": "rating", "ref": ref, "created_at": datetime.now(UTC)}
    with engine.connect() as conn:
        INSERT_OUTBOX.execute(conn, row)
        assert conn.in_transaction()
    with engine.connect() as conn:
        assert OUTBOX_BY_REF.first(conn, {"ref": ref}) is None
        INSERT_OUTBOX.execute(conn, row)
        conn.commit()
    with engine.connect() as conn:
        assert OUTBOX_BY_REF.first(conn, {"ref": ref}) is not None
