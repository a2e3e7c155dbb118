"""Invariant 3: the tamper-evident ledger: sequencing, signatures, proofs, verification."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, func, select, text

from portal import ledger, merkle
from portal.config import Settings
from portal.db import make_engine
from portal.errors import NotFound
from portal.models import LedgerEntry
from portal.ratings import record
from tests.factories import make_world, rating_in


@pytest.fixture(scope="module")
def key(settings: Settings) -> ledger.LedgerKey:
    return ledger.load_key(settings.ledger_key_path, settings.ledger_origin, create=True)


def _independent_root(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """RFC 9162 2.1.3.2, written again here so the test does not trust portal.merkle."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise AssertionError("proof too long")
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "proof too short"
    return r


def test_checkpoint_sequences_gap_free_and_signs(engine: Engine, key: ledger.LedgerKey) -> None:
    world = make_world(engine)
    receipts = [record(engine, rating_in(world, value=v)) for v in (1, 2, 3, 4, 5)]
    cp = ledger.checkpoint(engine, key)
    assert cp is not None
    with engine.connect() as conn:
        indices = [
            i
            for (i,) in conn.execute(
                select(LedgerEntry.leaf_index).order_by(LedgerEntry.leaf_index)
            )
        ]
        leaves = [
            bytes.fromhex(h)
            for (h,) in conn.execute(select(LedgerEntry.leaf_hash).order_by(LedgerEntry.leaf_index))
        ]
        sequenced = {r for (r,) in conn.execute(select(LedgerEntry.rating_id))}
    assert indices == list(range(cp.tree_size))
    assert {r.id for r in receipts} <= sequenced
    # The signature is over exactly the C2SP note, verified with the published key alone.
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.as_json()["public_key"]))
    public.verify(base64.b64decode(cp.signature), cp.note.encode())
    origin, size, root_b64 = cp.note.rstrip("\n").split("\n")
    assert (origin, int(size)) == (key.origin, cp.tree_size)
    assert base64.b64decode(root_b64).hex() == cp.root_hash == merkle.root(leaves).hex()
    assert ledger.checkpoint(engine, key) is None  # nothing new: no new checkpoint


def test_inclusion_proof_verifies_independently(engine: Engine, key: ledger.LedgerKey) -> None:
    world = make_world(engine)
    receipt = record(engine, rating_in(world))
    with engine.connect() as conn, pytest.raises(NotFound) as err:
        ledger.inclusion(conn, receipt.id)
    assert err.value.code == "not_yet_sequenced"
    for _ in range(3):  # more leaves after it, so the proof has work to do
        record(engine, rating_in(world))
    cp = ledger.checkpoint(engine, key)
    with engine.connect() as conn:
        proof = ledger.inclusion(conn, receipt.id)
    leaf = hashlib.sha256(b"\x00" + _canonical(engine, receipt.id)).digest()
    assert leaf.hex() == proof["leaf_hash"] == receipt.leaf_hash
    root = _independent_root(
        leaf, proof["leaf_index"], proof["tree_size"], [bytes.fromhex(p) for p in proof["proof"]]
    )
    assert root.hex() == cp.root_hash


def _canonical(engine: Engine, rid: str) -> bytes:
    from portal.canonical import canonical_bytes
    from portal.models import Rating

    with engine.connect() as conn:
        row = conn.execute(select(Rating).where(Rating.id == rid)).one()
    return canonical_bytes(row._mapping)


def test_consistency_between_checkpoints(engine: Engine, key: ledger.LedgerKey) -> None:
    world = make_world(engine)
    record(engine, rating_in(world))
    first = ledger.checkpoint(engine, key)
    for _ in range(5):
        record(engine, rating_in(world))
    second = ledger.checkpoint(engine, key)
    with engine.connect() as conn:
        proof = ledger.consistency(conn, first.tree_size, second.tree_size)
    merkle.verify_consistency(
        first.tree_size,
        second.tree_size,
        [bytes.fromhex(p) for p in proof],
        bytes.fromhex(first.root_hash),
        bytes.fromhex(second.root_hash),
    )


def test_clean_ledger_verifies(engine: Engine, key: ledger.LedgerKey) -> None:
    record(engine, rating_in(make_world(engine)))  # one pending, one sequenced at least
    assert ledger.verify(engine, key.private.public_key(), key.origin) == []


def _tamper(settings: Settings, sql: str, rid: str) -> None:
    """What an attacker with owner access does: drop the guard, change the row."""
    owner = make_engine(settings.database_url)
    with owner.begin() as conn:
        if owner.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE ratings DISABLE TRIGGER ratings_no_change"))
            conn.execute(text(sql), {"id": rid})
            conn.execute(text("ALTER TABLE ratings ENABLE ALWAYS TRIGGER ratings_no_change"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS ratings_no_update"))
            conn.execute(text(sql), {"id": rid})
    owner.dispose()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ratings SET score = 100, value = 5, top_box = true, bottom_box = false "
        "WHERE id = :id",
        "UPDATE ratings SET stage = 'issuance' WHERE id = :id",
        "UPDATE ratings SET occurred_at = recorded_at WHERE id = :id",
        "UPDATE ratings SET branch_id = NULL WHERE id = :id",
    ],
)
def test_tampering_is_named_by_verify(scratch_settings: Settings, sql: str) -> None:
    engine = make_engine(scratch_settings.runtime_database_url)
    key = ledger.load_key(
        scratch_settings.ledger_key_path, scratch_settings.ledger_origin, create=True
    )
    world = make_world(engine)
    receipts = [record(engine, rating_in(world, value=1)) for _ in range(6)]
    ledger.checkpoint(engine, key)
    victim = receipts[2].id
    _tamper(scratch_settings, sql, victim)
    problems = ledger.verify(engine, key.private.public_key(), key.origin)
    assert {p.rating_id for p in problems if p.rating_id} == {victim}
    engine.dispose()


def test_rewriting_the_leaf_hash_too_breaks_the_signed_root(scratch_settings: Settings) -> None:
    engine = make_engine(scratch_settings.runtime_database_url)
    key = ledger.load_key(
        scratch_settings.ledger_key_path, scratch_settings.ledger_origin, create=True
    )
    world = make_world(engine)
    receipts = [record(engine, rating_in(world, value=1)) for _ in range(4)]
    ledger.checkpoint(engine, key)
    # A thorough attacker recomputes the rating's leaf hash after changing it ...
    from portal.canonical import rating_leaf_hash
    from portal.models import Rating

    victim = receipts[1].id
    _tamper(scratch_settings, "UPDATE ratings SET value = 5, score = 100 WHERE id = :id", victim)
    with engine.connect() as conn:
        row = dict(conn.execute(select(Rating).where(Rating.id == victim)).one()._mapping)
    _tamper(
        scratch_settings,
        f"UPDATE ratings SET leaf_hash = '{rating_leaf_hash(row)}' WHERE id = :id",
        victim,
    )
    problems = [str(p) for p in ledger.verify(engine, key.private.public_key(), key.origin)]
    # ... but the ledger entry still holds the signed leaf, so it is named anyway.
    assert any(victim in p and "ledger and rating hashes differ" in p for p in problems)
    engine.dispose()


def test_checkpointer_refuses_a_ledger_that_lost_an_entry(scratch_settings: Settings) -> None:
    engine = make_engine(scratch_settings.runtime_database_url)
    key = ledger.load_key(
        scratch_settings.ledger_key_path, scratch_settings.ledger_origin, create=True
    )
    world = make_world(engine)
    record(engine, rating_in(world))
    ledger.checkpoint(engine, key)
    owner = make_engine(scratch_settings.database_url)
    with owner.begin() as conn:
        if owner.dialect.name == "postgresql":
            conn.execute(
                text("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_change")
            )
        else:
            conn.execute(text("DROP TRIGGER ledger_entries_no_delete"))
        conn.execute(text("DELETE FROM ledger_entries"))
    record(engine, rating_in(world))
    with pytest.raises(ledger.LedgerError):
        ledger.checkpoint(engine, key)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LedgerEntry)).scalar_one() == 0
    owner.dispose()
    engine.dispose()


def test_a_forged_checkpoint_row_is_never_built_upon(scratch_settings: Settings) -> None:
    """The app role may INSERT checkpoints; a forged one must not become the new base."""
    engine = make_engine(scratch_settings.runtime_database_url)
    key = ledger.load_key(
        scratch_settings.ledger_key_path, scratch_settings.ledger_origin, create=True
    )
    world = make_world(engine)
    record(engine, rating_in(world))
    real = ledger.checkpoint(engine, key)
    fake_leaf = hashlib.sha256(b"\x00forged").digest()
    forged_root = merkle.root([*_leaf_hashes(engine), fake_leaf])
    pending = record(engine, rating_in(world)).id
    with engine.begin() as conn:  # what an attacker with the app's rights could do
        conn.execute(
            text(
                "INSERT INTO ledger_entries (leaf_index, rating_id, leaf_hash, "
                "sequenced_at) VALUES (:i, :r, :h, :t)"
            ),
            {
                "i": real.tree_size,
                "r": pending,
                "h": fake_leaf.hex(),
                "t": real.timestamp,
            },
        )
        conn.execute(
            text(
                "INSERT INTO checkpoints (tree_size, root_hash, timestamp, note, "
                "signature, key_id, frontier) VALUES (:s, :r, :t, :n, :g, :k, :f)"
            ),
            {
                "s": real.tree_size + 1,
                "r": forged_root.hex(),
                "t": real.timestamp,
                "n": ledger.note_for(key.origin, real.tree_size + 1, forged_root),
                "g": base64.b64encode(b"\x00" * 64).decode(),
                "k": key.key_id,
                "f": f'["{forged_root.hex()}"]',
            },
        )
    with pytest.raises(ledger.LedgerError, match="not signed"):
        ledger.checkpoint(engine, key)
    problems = [str(p) for p in ledger.verify(engine, key.private.public_key(), key.origin)]
    assert any("bad signature" in p for p in problems)
    engine.dispose()


def _leaf_hashes(engine: Engine) -> list[bytes]:
    with engine.connect() as conn:
        return [
            bytes.fromhex(h)
            for (h,) in conn.execute(select(LedgerEntry.leaf_hash).order_by(LedgerEntry.leaf_index))
        ]


def _tamper_text(settings: Settings, sql: str, rid: str) -> None:
    """An owner who switches off the guard on rating_texts and rewrites a row."""
    owner = make_engine(settings.database_url)
    with owner.begin() as conn:
        if owner.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE rating_texts DISABLE TRIGGER rating_texts_guard"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS rating_texts_guard"))
        conn.execute(text(sql), {"id": rid})
    owner.dispose()


@pytest.mark.parametrize(
    "sql",
    [
        # a new text, marked "erased" so that its commitment would not be checked
        "UPDATE rating_texts SET body = '服务很好，五星推荐', redacted = true "
        "WHERE rating_id = :id",
        # hidden as if by a takedown, but no takedown was ever approved
        "UPDATE rating_texts SET hidden = true, hidden_at = CURRENT_TIMESTAMP, "
        "hidden_reason = 'abuse' WHERE rating_id = :id",
        # erased without a takedown
        "UPDATE rating_texts SET body = '', redacted = true, hidden = true, "
        "hidden_at = CURRENT_TIMESTAMP, hidden_reason = 'personal_data' WHERE rating_id = :id",
    ],
    ids=["rewritten_as_erased", "hidden_without_takedown", "erased_without_takedown"],
)
def test_a_text_changed_behind_the_guard_is_named_by_verify(
    scratch_settings: Settings, sql: str
) -> None:
    engine = make_engine(scratch_settings.runtime_database_url)
    key = ledger.load_key(
        scratch_settings.ledger_key_path, scratch_settings.ledger_origin, create=True
    )
    world = make_world(engine)
    receipts = [record(engine, rating_in(world, value=1, text="理赔拖了三个月")) for _ in range(3)]
    ledger.checkpoint(engine, key)
    victim = receipts[1].id
    _tamper_text(scratch_settings, sql, victim)
    problems = ledger.verify(engine, key.private.public_key(), key.origin)
    assert {p.rating_id for p in problems if p.rating_id} == {victim}, problems
    engine.dispose()


def _sequenced_world(settings: Settings, n: int = 4, **kw: object) -> tuple[Engine, Any, list]:
    engine = make_engine(settings.runtime_database_url)
    key = ledger.load_key(settings.ledger_key_path, settings.ledger_origin, create=True)
    world = make_world(engine)
    receipts = [record(engine, rating_in(world, value=1, **kw)) for _ in range(n)]
    ledger.checkpoint(engine, key)
    return engine, key, receipts


def test_rewriting_the_ledger_entry_too_breaks_the_signed_root(
    scratch_settings: Settings,
) -> None:
    """docs/reliability.md: rating, its leaf hash and its ledger entry all rewritten."""
    from portal.canonical import rating_leaf_hash
    from portal.models import Rating

    engine, key, receipts = _sequenced_world(scratch_settings)
    victim = receipts[2].id
    _tamper(scratch_settings, "UPDATE ratings SET value = 5, score = 100 WHERE id = :id", victim)
    with engine.connect() as conn:
        row = dict(conn.execute(select(Rating).where(Rating.id == victim)).one()._mapping)
    leaf = rating_leaf_hash(row)
    _tamper(scratch_settings, f"UPDATE ratings SET leaf_hash = '{leaf}' WHERE id = :id", victim)
    owner = make_engine(scratch_settings.database_url)
    with owner.begin() as conn:
        if owner.dialect.name == "postgresql":
            conn.execute(
                text("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_change")
            )
        else:
            conn.execute(text("DROP TRIGGER ledger_entries_no_update"))
        conn.execute(
            text("UPDATE ledger_entries SET leaf_hash = :h WHERE rating_id = :id"),
            {"h": leaf, "id": victim},
        )
    owner.dispose()
    problems = [str(p) for p in ledger.verify(engine, key.private.public_key(), key.origin)]
    assert any("root does not match the ledger leaves" in p for p in problems), problems
    engine.dispose()


def test_deleting_a_sequenced_rating_is_named_by_verify(scratch_settings: Settings) -> None:
    engine, key, receipts = _sequenced_world(scratch_settings, text=None)
    victim = receipts[1].id
    owner = make_engine(scratch_settings.database_url)
    raw = owner.raw_connection()
    try:
        cur = raw.cursor()
        if owner.dialect.name == "postgresql":  # replica mode skips the foreign keys
            cur.execute("SET session_replication_role = replica")
            cur.execute("ALTER TABLE ratings DISABLE TRIGGER ratings_no_change")
            cur.execute("DELETE FROM ratings WHERE id = %s", (victim,))
        else:
            cur.execute("PRAGMA foreign_keys = OFF")  # our connections begin no transaction
            cur.execute("DROP TRIGGER ratings_no_delete")
            cur.execute("DELETE FROM ratings WHERE id = ?", (victim,))
        raw.commit()
    finally:
        raw.close()
        owner.dispose()
    problems = ledger.verify(engine, key.private.public_key(), key.origin)
    assert any(p.rating_id == victim and "gone" in p.message for p in problems), problems
    engine.dispose()


def test_a_rewritten_text_is_named_by_verify(scratch_settings: Settings) -> None:
    engine, key, receipts = _sequenced_world(scratch_settings, text="理赔拖了三个月")
    victim = receipts[0].id
    _tamper_text(
        scratch_settings, "UPDATE rating_texts SET body = '理赔很快' WHERE rating_id = :id", victim
    )
    problems = ledger.verify(engine, key.private.public_key(), key.origin)
    assert [(p.rating_id, p.message) for p in problems] == [
        (victim, "text no longer matches its commitment")
    ]
    engine.dispose()


def test_a_rating_stamped_without_a_ledger_entry_is_named_by_verify(
    scratch_settings: Settings,
) -> None:
    """The app role may stamp queue rows (UPDATE), so it could hide a rating from the
    checkpointer; verify names such a rating."""
    engine = make_engine(scratch_settings.runtime_database_url)
    key = ledger.load_key(
        scratch_settings.ledger_key_path, scratch_settings.ledger_origin, create=True
    )
    world = make_world(engine)
    record(engine, rating_in(world))
    ledger.checkpoint(engine, key)
    hidden = record(engine, rating_in(world)).id
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE ledger_queue SET sequenced_at = recorded_at WHERE rating_id = :id"),
            {"id": hidden},
        )
    assert ledger.checkpoint(engine, key) is None  # the checkpointer no longer sees it
    problems = ledger.verify(engine, key.private.public_key(), key.origin)
    assert [p.rating_id for p in problems] == [hidden]
    assert "no ledger entry" in str(problems[0])
    engine.dispose()


def test_a_checkpoint_reads_only_the_new_leaves(engine: Engine, key: ledger.LedgerKey) -> None:
    """Leaf order is (recorded_at, id) across batches, and a second checkpoint extends
    the first one's frontier to the root of all leaves."""
    world = make_world(engine)
    ledger.checkpoint(engine, key)
    start = len(_leaf_hashes(engine))
    for _ in range(7):
        record(engine, rating_in(world))
    first = ledger.checkpoint(engine, key, batch=3)  # three INSERT ... SELECT batches
    for _ in range(5):
        record(engine, rating_in(world))
    second = ledger.checkpoint(engine, key, batch=2)
    leaves = _leaf_hashes(engine)
    assert second.tree_size == len(leaves) == first.tree_size + 5
    assert second.root_hash == merkle.root(leaves).hex()
    with engine.connect() as conn:
        order = (
            conn.execute(
                text(
                    "SELECT e.leaf_index FROM ledger_entries e "
                    "JOIN ratings r ON r.id = e.rating_id "
                    "WHERE e.leaf_index >= :start ORDER BY r.recorded_at, r.id"
                ),
                {"start": start},
            )
            .scalars()
            .all()
        )
        open_rows = conn.execute(
            text("SELECT count(*) FROM ledger_queue WHERE sequenced_at IS NULL")
        ).scalar_one()
    assert order == sorted(order)
    assert open_rows == 0


# -- the leaf hash the queue carries (migration 0010) ----------------------------------------

QUEUE_ATTACKS = [
    "UPDATE ledger_queue SET leaf_hash = :forged WHERE rating_id = :id",
    "UPDATE ledger_queue SET recorded_at = recorded_at WHERE rating_id = :id",
    "UPDATE ledger_queue SET rating_id = rating_id WHERE rating_id = :id",
]


@pytest.mark.parametrize("sql", QUEUE_ATTACKS)
@pytest.mark.parametrize("who", ["app", "owner"])
def test_a_queue_rows_leaf_hash_and_identity_cannot_be_updated(
    scratch_settings: Settings, sql: str, who: str
) -> None:
    """The app role may UPDATE ledger_queue (to stamp sequenced_at), so a trigger keeps
    the hash the checkpointer will sign, and which rating and place it is for, as written."""
    engine = make_engine(scratch_settings.runtime_database_url)
    world = make_world(engine)
    rid = record(engine, rating_in(world)).id
    attacker = engine if who == "app" else make_engine(scratch_settings.database_url)
    raw = attacker.raw_connection()  # through the driver itself, not our code
    try:
        cur = raw.cursor()
        mark = "%s" if attacker.dialect.name == "postgresql" else "?"
        params = ("0" * 64, rid) if ":forged" in sql else (rid,)
        with pytest.raises(Exception, match=r"cannot be changed"):
            cur.execute(sql.replace(":forged", mark).replace(":id", mark), params)
        raw.rollback()
        # Stamping, what the checkpointer does, is still allowed.
        cur.execute(
            f"UPDATE ledger_queue SET sequenced_at = recorded_at WHERE rating_id = {mark}", (rid,)
        )
        raw.rollback()
    finally:
        raw.close()
    with engine.connect() as conn:
        queued = conn.execute(
            text(
                "SELECT q.leaf_hash, r.leaf_hash FROM ledger_queue q JOIN ratings r "
                "ON r.id = q.rating_id WHERE q.rating_id = :id"
            ),
            {"id": rid},
        ).one()
    assert queued[0] == queued[1]
    if attacker is not engine:
        attacker.dispose()
    engine.dispose()


def _requeue(settings: Settings, rid: str, leaf_hash: str | None) -> None:
    """An owner (or, on SQLite, anyone with the file) deletes a rating's queue row and
    writes it again with another hash: the only way past the trigger above."""
    owner = make_engine(settings.database_url)
    with owner.begin() as conn:
        conn.execute(text("DELETE FROM ledger_queue WHERE rating_id = :id"), {"id": rid})
        conn.execute(
            text(
                "INSERT INTO ledger_queue (rating_id, recorded_at, leaf_hash) "
                "SELECT id, recorded_at, :h FROM ratings WHERE id = :id"
            ),
            {"id": rid, "h": leaf_hash},
        )
    owner.dispose()


def test_a_forged_hash_in_the_queue_is_named_before_and_after_it_is_sequenced(
    scratch_settings: Settings,
) -> None:
    """The checkpointer signs the hash the queue carries, not the rating's: a forged one
    is named by verify while it waits, and once signed the ledger entry differs from the
    rating's hash, which verify names too (the rating itself is untouched)."""
    engine, key, _ = _sequenced_world(scratch_settings, n=2)
    world = make_world(engine)
    victim = record(engine, rating_in(world)).id
    honest = record(engine, rating_in(world)).id
    forged = hashlib.sha256(b"not this rating").hexdigest()
    _requeue(scratch_settings, victim, forged)
    public = key.private.public_key()
    pending = ledger.verify(engine, public, key.origin)
    assert [(p.rating_id, p.message) for p in pending] == [
        (victim, "queued with another leaf hash than its own: the checkpointer would sign it")
    ]
    cp = ledger.checkpoint(engine, key)
    assert cp is not None
    signed = _signed(engine, victim, honest)
    assert signed[victim] == forged  # what the queue carried was signed ...
    problems = ledger.verify(engine, public, key.origin)
    # ... and verify names exactly that rating, and nothing else.
    assert {p.rating_id for p in problems} == {victim}
    assert any("ledger and rating hashes differ" in p.message for p in problems)
    engine.dispose()


def _signed(engine: Engine, *rating_ids: str) -> dict[str, str]:
    """The leaf hash the ledger holds for each of these ratings."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(LedgerEntry.rating_id, LedgerEntry.leaf_hash).where(
                LedgerEntry.rating_id.in_(rating_ids)
            )
        )
        return dict(rows.all())


def test_a_queue_row_without_a_hash_is_sequenced_with_its_ratings(
    scratch_settings: Settings,
) -> None:
    """A row queued by an app older than migration 0010 (no leaf_hash) gets the rating's
    hash: the ledger stays exactly what verify recomputes."""
    engine, key, _ = _sequenced_world(scratch_settings, n=2)
    world = make_world(engine)
    old = record(engine, rating_in(world))
    new = record(engine, rating_in(world))
    _requeue(scratch_settings, old.id, None)
    cp = ledger.checkpoint(engine, key)
    assert cp is not None
    assert _signed(engine, old.id, new.id) == {old.id: old.leaf_hash, new.id: new.leaf_hash}
    assert cp.root_hash == merkle.root(_leaf_hashes(engine)).hex()
    assert ledger.verify(engine, key.private.public_key(), key.origin) == []
    engine.dispose()


def test_the_bulk_write_path_queues_each_rating_with_its_leaf_hash(engine: Engine) -> None:
    world = make_world(engine)
    receipts = [record(engine, rating_in(world)) for _ in range(3)]
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                text(
                    "SELECT rating_id, leaf_hash FROM ledger_queue WHERE rating_id IN (:a, :b, :c)"
                ),
                dict(zip("abc", (r.id for r in receipts), strict=True)),
            ).all()
        )
    assert rows == {r.id: r.leaf_hash for r in receipts}
