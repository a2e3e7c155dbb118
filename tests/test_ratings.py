"""record(): the one write path. Validation, normalisation, idempotency, one transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from portal.canonical import rating_leaf_hash, text_commitment, timestamp
from portal.channels.web import RATING_ID
from portal.errors import Conflict, Invalid
from portal.models import Outbox, Rating, RatingText, RollupDaily, RollupStaffDaily
from portal.ratings import normalise_score, record
from tests.factories import CHINA, World, counts, make_world, rating_in


@pytest.fixture(scope="module")
def world(engine: Engine) -> World:
    return make_world(engine)


@pytest.mark.parametrize(
    ("scale", "value", "expected"),
    [
        (5, 1, (0, False, True)),
        (5, 2, (25, False, True)),
        (5, 3, (50, False, False)),
        (5, 4, (75, False, False)),
        (5, 5, (100, True, False)),
        (3, 1, (100, True, False)),
        (3, 2, (50, False, False)),
        (3, 3, (0, False, True)),
    ],
)
def test_scores_are_normalised_to_0_100(scale: int, value: int, expected: tuple) -> None:
    assert normalise_score(scale, value) == expected


def test_record_stores_rating_text_rollup_and_outbox_together(engine: Engine, world: World) -> None:
    before = counts(engine)
    r = rating_in(world, text="  柜台态度很好\r\n办理很快  ")
    receipt = record(engine, r)
    after = counts(engine)
    assert after["ratings"] == before["ratings"] + 1
    assert after["rating_texts"] == before["rating_texts"] + 1
    assert after["outbox"] == before["outbox"] + 1
    assert after["rollup_n"] == before["rollup_n"] + 1
    with engine.connect() as conn:
        row = conn.execute(select(Rating).where(Rating.id == receipt.id)).one()
        txt = conn.execute(select(RatingText).where(RatingText.rating_id == receipt.id)).one()
        assert conn.execute(select(Outbox).where(Outbox.ref == receipt.id)).one().topic == "rating"
    assert (row.score, row.top_box, row.bottom_box) == (75, False, False)
    assert txt.body == "柜台态度很好\n办理很快"
    # The rating commits to the text through a salted hash, and the receipt to the row.
    assert row.text_hash == text_commitment(bytes.fromhex(txt.salt), txt.body)
    assert receipt.leaf_hash == row.leaf_hash == rating_leaf_hash(row._mapping)


def test_ratings_recorded_one_after_another_get_ids_in_that_order(
    engine: Engine, world: World
) -> None:
    """Time-ordered ids keep the indexes keyed by rating id appending at their end (a
    random id dirties a random page of each: the checkpoint of 100k on 10M ratings was
    20-60 times slower). Still ids the receipt and follow-up routes accept."""
    receipts = [record(engine, rating_in(world)) for _ in range(20)]
    ids = [r.id for r in receipts]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(RATING_ID.match(i) for i in ids)
    with engine.connect() as conn:
        recorded = conn.execute(
            select(Rating.id).where(Rating.id.in_(ids)).order_by(Rating.recorded_at, Rating.id)
        ).scalars()
        assert list(recorded) == ids


def test_same_text_gets_different_commitments(engine: Engine, world: World) -> None:
    a = record(engine, rating_in(world, text="好"))
    b = record(engine, rating_in(world, text="好"))
    with engine.connect() as conn:
        hashes = conn.execute(select(Rating.text_hash).where(Rating.id.in_([a.id, b.id]))).all()
    assert hashes[0][0] != hashes[1][0]


def test_idempotent_replay_returns_the_original_and_stores_nothing(
    engine: Engine, world: World
) -> None:
    r = rating_in(world)
    first = record(engine, r)
    before = counts(engine)
    again = record(engine, r)
    assert again.replayed and not first.replayed
    assert (again.id, again.leaf_hash) == (first.id, first.leaf_hash)
    assert counts(engine) == before


def test_same_key_different_body_is_a_conflict(engine: Engine, world: World) -> None:
    r = rating_in(world)
    record(engine, r)
    before = counts(engine)
    with pytest.raises(Conflict):
        record(engine, rating_in(world, idempotency_key=r.idempotency_key, value=1))
    assert counts(engine) == before


def test_same_key_from_another_source_is_a_different_rating(engine: Engine, world: World) -> None:
    r = rating_in(world)
    a = record(engine, r)
    b = record(
        engine, rating_in(world, idempotency_key=r.idempotency_key, source="device:test-other")
    )
    assert a.id != b.id


def _future() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


BAD = {
    "wrong stage": ({"stage": "payment"}, "stage", "invalid_stage"),
    "score 0": ({"value": 0}, "value", "score_out_of_range"),
    "score 6": ({"value": 6}, "value", "score_out_of_range"),
    "bool score": ({"value": True}, "value", "score_out_of_range"),
    "wrong channel": ({"channel": "fax"}, "channel", "invalid_channel"),
    "counter on 5 points": ({"channel": "counter", "scale": 5}, "scale", "invalid_scale"),
    "unknown staff": ({"staff_no": "NOPE99"}, "staff_no", "unknown_staff"),
    "staff of another insurer": ({"staff_no": "CS0001"}, "staff_no", "unknown_staff"),
    "branch of another insurer": ({"branch": "TB-CS01"}, "branch", "unknown_branch"),
    "unknown insurer": ({"insurer": "ZZZ"}, "insurer", "unknown_insurer"),
    "2001 characters": ({"text": "赔" * 2001}, "text", "text_too_long"),
    "NUL byte": ({"text": "好\x00评"}, "text", "control_character"),
    "escape char": ({"text": "好\x1b[31m评"}, "text", "control_character"),
    "future time": ({"occurred_at": _future()}, "occurred_at", "time_in_future"),
    "year 1": ({"occurred_at": datetime(1, 1, 1, tzinfo=UTC)}, "occurred_at", "time_too_old"),
    "float scale": ({"scale": 5.0}, "scale", "invalid_scale"),
    "float score": ({"value": 4.0}, "value", "score_out_of_range"),
    "naive time": ({"occurred_at": datetime(2026, 1, 1, 10)}, "occurred_at", "missing_offset"),
    "empty key": ({"idempotency_key": ""}, "idempotency_key", "invalid_idempotency_key"),
    "unknown correction": ({"corrects": "f" * 32}, "corrects", "unknown_rating"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_changes_nothing(engine: Engine, world: World, case: str) -> None:
    overrides, field, code = BAD[case]
    before = counts(engine)
    with pytest.raises(Invalid) as err:
        record(engine, rating_in(world, **overrides))
    assert (err.value.field, err.value.code) == (field, code)
    assert str(err.value)  # a readable message, with its parameters filled in
    assert counts(engine) == before


def test_2000_characters_after_nfc_are_accepted(engine: Engine, world: World) -> None:
    # "e" + combining acute is two code points but one after NFC: the limit is on NFC.
    text = "e\u0301" * 2000
    receipt = record(engine, rating_in(world, text=text))
    with engine.connect() as conn:
        body = conn.execute(select(RatingText.body).where(RatingText.rating_id == receipt.id))
        assert len(body.scalar_one()) == 2000


def test_branch_is_taken_from_the_staff_member(engine: Engine, world: World) -> None:
    receipt = record(engine, rating_in(world, branch=None))
    with engine.connect() as conn:
        row = conn.execute(select(Rating.branch_id).where(Rating.id == receipt.id)).one()
    assert row.branch_id is not None


def test_rollups_count_each_rating_once_per_day_and_staff(engine: Engine, world: World) -> None:
    when = datetime(2025, 3, 3, 23, 30, tzinfo=UTC)  # 07:30 on 4 March in China

    def total(conn, table):  # noqa: ANN001, ANN202
        return conn.execute(
            select(table.n, table.sum_score).where(table.day == datetime(2025, 3, 4).date())
        ).all()

    with engine.connect() as conn:
        before = (
            sum(n for n, _ in total(conn, RollupDaily)),
            sum(n for n, _ in total(conn, RollupStaffDaily)),
        )
    record(engine, rating_in(world, occurred_at=when, value=1, channel="counter", scale=3))
    with engine.connect() as conn:
        after = (
            sum(n for n, _ in total(conn, RollupDaily)),
            sum(n for n, _ in total(conn, RollupStaffDaily)),
        )
    assert after == (before[0] + 1, before[1] + 1)


def test_a_correction_is_a_new_row_referencing_the_old(engine: Engine, world: World) -> None:
    old = record(engine, rating_in(world, value=1))
    new = record(engine, rating_in(world, value=4, corrects=old.id))
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                select(Rating.id, Rating.value).where(Rating.id.in_([old.id, new.id]))
            ).all()
        )
    assert rows == {old.id: 1, new.id: 4}


@given(st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.sampled_from([UTC, CHINA, None])))
def test_the_canonical_timestamp_keeps_its_exact_form(dt: datetime) -> None:
    """Leaf hashes and fingerprints hash this string: it must stay byte for byte what
    receipts already published were made with (microseconds always, Z, UTC)."""
    expected = (dt if dt.tzinfo is None else dt.astimezone(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert timestamp(dt) == expected
