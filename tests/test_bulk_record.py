"""record_many, the bulk write path (bench/scale.py loads millions through it), is not a
side door: it refuses what record() refuses and stores exactly what record() stores."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from portal import ratings, rollups
from portal.config import Settings
from portal.db import make_engine
from portal.errors import Conflict, Invalid, PortalError
from portal.models import LedgerQueue, Outbox, Rating, RatingText, ScreeningFlag
from portal.ratings import RatingIn, day_of, record, record_many
from tests import conftest
from tests.factories import CHINA, World, counts, make_world, rating_in
from tests.test_ratings import BAD

TEXTS = ("理赔很快，点赞", "柜台态度差，等了一个小时", "这个业务员就是个傻逼", None, None)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Settings, Settings]]:
    """Two empty databases, to store the same ratings once each way."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if url.startswith("postgresql"):
        gens = [conftest._postgres_database(url, suffix=f"_bulk{i}") for i in (1, 2)]
        yield tuple(conftest.test_settings(next(g), tmp_path / f"k{i}") for i, g in enumerate(gens))  # type: ignore[misc]
        for g in gens:
            g.close()
    else:
        yield tuple(  # type: ignore[misc]
            conftest.test_settings(f"sqlite:///{tmp_path / f'bulk{i}.db'}", tmp_path / f"k{i}")
            for i in (1, 2)
        )


class _Frozen(datetime):
    AT = datetime(2026, 11, 30, 9, 15, 0, 123456, tzinfo=UTC)

    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return cls.AT if tz is None else cls.AT.astimezone(tz)


@pytest.fixture
def deterministic(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Same ids, salts and clock on both runs, so every stored byte can be compared."""

    def reset() -> None:
        rng = random.Random(7)
        monkeypatch.setattr(ratings, "new_id", lambda: rng.randbytes(16).hex())
        monkeypatch.setattr(ratings.secrets, "token_bytes", lambda n: rng.randbytes(n))

    monkeypatch.setattr(ratings, "datetime", _Frozen)
    return reset


def _inputs(w: World, n: int = 300) -> list[RatingIn]:
    rng = random.Random(11)
    subjects = [
        (w.branch_a, w.teller_a),
        (w.branch_a, None),
        (None, w.teller_a),  # the branch comes from the staff member
        (None, None),
    ]
    out = []
    for i in range(n):
        branch, staff = rng.choice(subjects)
        channel = rng.choice(("counter", "phone", "web"))
        scale = rng.choice(ratings.SCALES[channel])
        # Near China-time midnight too: the rollup day must agree.
        when = _Frozen.AT - timedelta(days=rng.randrange(0, 60), minutes=rng.randrange(0, 1440))
        out.append(
            RatingIn(
                insurer=w.insurer_a,
                stage=rng.choice(("issuance", "renewal", "claim")),
                channel=channel,
                scale=scale,
                value=rng.randint(1, scale),
                occurred_at=when.astimezone(CHINA),
                source=f"device:{rng.randrange(3)}",
                idempotency_key=f"bulk-{i}",
                branch=branch,
                staff_no=staff,
                text=rng.choice(TEXTS) if channel == "web" else None,
                verified=rng.random() < 0.8,
            )
        )
    out += [out[5], out[17]]  # replays within the batch: stored once
    return out


def _stored(engine: Engine) -> dict[str, Any]:
    def rows(stmt: Any) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return sorted(tuple(r) for r in conn.execute(stmt))

    return {
        "ratings": rows(select(Rating.__table__)),
        "texts": rows(select(RatingText.__table__)),
        "daily": rows(select(rollups.DAILY)),
        "staff": rows(select(rollups.STAFF)),
        "outbox": rows(select(Outbox.topic, Outbox.ref, Outbox.done_at)),
        "queue": rows(select(LedgerQueue.__table__)),
        "flags": rows(select(ScreeningFlag.rating_id, ScreeningFlag.terms)),
    }


def test_record_many_stores_exactly_what_record_stores(
    two: tuple[Settings, Settings], deterministic: Any
) -> None:
    one, bulk = (make_engine(s.runtime_database_url) for s in two)
    try:
        w = make_world(one)
        assert make_world(bulk) == w
        items = _inputs(w)
        deterministic()
        singles = [record(one, r) for r in items]
        deterministic()
        with bulk.begin() as conn:
            batched = record_many(conn, items)
        assert [(r.id, r.leaf_hash, r.replayed) for r in batched] == [
            (r.id, r.leaf_hash, r.replayed) for r in singles
        ]
        assert sum(r.replayed for r in batched) == 2
        a, b = _stored(one), _stored(bulk)
        assert len(a["ratings"]) == len(items) - 2 and a["flags"]
        for table in a:
            assert a[table] == b[table], table
        # Every stored leaf hash is the canonical hash of its row.
        with bulk.connect() as conn:
            for row in conn.execute(select(Rating)):
                assert ratings.rating_leaf_hash(row._mapping) == row.leaf_hash
    finally:
        one.dispose()
        bulk.dispose()


def test_bulk_rollups_equal_a_rebuild(two: tuple[Settings, Settings]) -> None:
    settings = two[0]
    app = make_engine(settings.runtime_database_url)
    owner = make_engine(settings.database_url)
    try:
        items = _inputs(make_world(app), 1200)
        subjects = None
        for start in range(0, len(items), 250):  # several batches, one cache of subjects
            with app.begin() as conn:
                subjects = subjects or ratings.Subjects(conn)
                record_many(conn, items[start : start + 250], subjects=subjects)
        maintained = _stored(app)
        with owner.begin() as conn:
            assert rollups.rebuild(conn, day_of) == len(items) - 2
        rebuilt = _stored(app)
        assert (rebuilt["daily"], rebuilt["staff"]) == (maintained["daily"], maintained["staff"])
    finally:
        app.dispose()
        owner.dispose()


def _refusal(fn: Any) -> tuple[type, str | None, str]:
    with pytest.raises(PortalError) as err:
        fn()
    return type(err.value), err.value.field, err.value.code


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_record_many_refuses_what_record_refuses(engine: Engine, case: str) -> None:
    w = make_world(engine)
    overrides = BAD[case][0]
    before = counts(engine)
    single = _refusal(lambda: record(engine, rating_in(w, **overrides)))

    def bulk() -> None:
        with engine.begin() as conn:  # a good rating first: the batch stores nothing
            record_many(conn, [rating_in(w), rating_in(w, **overrides), rating_in(w)])

    assert _refusal(bulk) == single
    assert single[0] is Invalid
    assert counts(engine) == before


def test_record_many_names_the_first_bad_rating_in_order(engine: Engine) -> None:
    w = make_world(engine)
    items = [rating_in(w, insurer="ZZZ"), rating_in(w, stage="payment")]
    with pytest.raises(Invalid) as err, engine.begin() as conn:
        record_many(conn, items)
    assert err.value.code == "unknown_insurer"  # as record() one by one would stop


def test_a_key_reused_for_another_rating_is_a_conflict_within_a_batch_too(
    engine: Engine,
) -> None:
    w = make_world(engine)
    first = rating_in(w)
    other = RatingIn(**{**first.__dict__, "value": 1})
    before = counts(engine)
    with pytest.raises(Conflict), engine.begin() as conn:
        record_many(conn, [first, other])
    assert counts(engine) == before
    record(engine, first)
    with pytest.raises(Conflict), engine.begin() as conn:
        record_many(conn, [rating_in(w), other])
    with engine.begin() as conn:
        [again] = record_many(conn, [first])
    assert again.replayed


def test_timings_are_reported_per_phase(engine: Engine) -> None:
    w = make_world(engine)
    timings: dict[str, float] = {}
    with engine.begin() as conn:
        record_many(conn, [rating_in(w) for _ in range(20)], timings=timings)
    assert set(timings) == {"prepare", "insert", "rollups", "queues"}
    assert all(v >= 0 for v in timings.values())


def test_record_queues_every_rating_for_the_checkpointer(engine: Engine) -> None:
    w = make_world(engine)
    when = datetime.now(CHINA) - timedelta(minutes=3)
    receipt = record(engine, rating_in(w, occurred_at=when))
    with engine.connect() as conn:
        row = conn.execute(select(LedgerQueue).where(LedgerQueue.rating_id == receipt.id)).one()
    assert row.sequenced_at is None
    assert ratings.utc(row.recorded_at) == receipt.recorded_at


def test_fingerprints_are_unchanged_by_the_faster_encoding(engine: Engine) -> None:
    """Stored fingerprints are compared on every replay: the bytes must not move."""
    import hashlib
    import json
    from dataclasses import asdict

    w = make_world(engine)
    for r in (rating_in(w), rating_in(w, text=None, branch=None, corrects="a" * 32)):
        text, occurred = ratings.validate(r, datetime.now(UTC), 120)
        body = asdict(r) | {"text": text, "occurred_at": ratings.timestamp(occurred)}
        body.pop("idempotency_key")
        raw = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
        assert ratings.fingerprint(r, text, occurred) == hashlib.sha256(raw.encode()).hexdigest()
