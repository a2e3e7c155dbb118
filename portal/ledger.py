"""The ratings ledger: sequencing, signed checkpoints, proofs and verification.

Writers only store a leaf hash with their rating. The checkpointer, alone and in
batches, appends not-yet-sequenced ratings to `ledger_entries` with gap-free leaf
indices, extends the stored compact range (frontier) of the previous checkpoint and
signs the new root (Ed25519 over a C2SP tlog-checkpoint note). See docs/ledger.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)

from portal import merkle
from portal.canonical import rating_leaf_hash, text_commitment, timestamp, utc
from portal.db import reading
from portal.errors import BadRequest, NotFound
from portal.models import (
    Checkpoint,
    LedgerEntry,
    LedgerQueue,
    Rating,
    RatingText,
    TakedownDecision,
    TakedownRequest,
)

EMPTY_ROOT = hashlib.sha256(b"").digest()
LOCK_ID = 7262002


class LedgerError(RuntimeError):
    """The stored ledger does not match what was signed: refuse to extend it."""


@dataclass(frozen=True)
class LedgerKey:
    private: Ed25519PrivateKey
    origin: str

    @property
    def public_bytes(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> str:
        """C2SP signed-note key ID: SHA-256(origin || 0x0A || 0x01 || public key)[:4], hex."""
        return (
            hashlib.sha256(self.origin.encode() + b"\n\x01" + self.public_bytes).digest()[:4].hex()
        )

    def as_json(self) -> dict[str, str]:
        return {
            "key_id": self.key_id,
            "algorithm": "ed25519",
            "public_key": base64.b64encode(self.public_bytes).decode(),
        }


def load_key(path: Path, origin: str, *, create: bool = False) -> LedgerKey:
    """Read the signing key; with create=True generate it (mode 0600) when absent."""
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"ledger key {path} is missing: run `portal init`")
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return LedgerKey(key, origin)


def note_for(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def checkpoint_json(cp: Any, origin: str) -> dict[str, Any]:
    return {
        "origin": origin,
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash,
        "timestamp": timestamp(cp.timestamp),
        "note": cp.note,
        "signature": cp.signature,
        "key_id": cp.key_id,
    }


def latest(conn: Connection) -> Any:
    return conn.execute(select(Checkpoint).order_by(Checkpoint.tree_size.desc()).limit(1)).first()


def by_size(conn: Connection, size: int) -> Any:
    return conn.execute(select(Checkpoint).where(Checkpoint.tree_size == size)).first()


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_ID})
    # SQLite: the transaction began IMMEDIATE, which already excludes other writers.


def _signed_by(cp: Any, key: LedgerKey) -> bool:
    """The row says what our key signed: note matches its fields, signature verifies."""
    if cp.note != note_for(key.origin, cp.tree_size, bytes.fromhex(cp.root_hash)):
        return False
    try:
        key.private.public_key().verify(base64.b64decode(cp.signature), cp.note.encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def _previous(conn: Connection, key: LedgerKey) -> tuple[int, list[bytes]]:
    """Size and frontier of the last checkpoint, after checking both against what was signed.

    Someone able to INSERT (the app role can) could add a forged checkpoint row; it would
    fail the signature check here, so the next tree is never signed on top of it.
    """
    last = latest(conn)
    # The highest leaf index, not count(*): an index lookup instead of a scan of every
    # entry. Entries are gap-free by construction (append-only, one sequencer); a hole
    # made by someone with owner rights is what `verify` finds.
    top = conn.execute(select(func.max(LedgerEntry.leaf_index))).scalar()
    size = 0 if top is None else int(top) + 1
    if last is None:
        if size:
            raise LedgerError(f"{size} ledger entries exist but no checkpoint signs them")
        return 0, []
    if not _signed_by(last, key):
        raise LedgerError(f"checkpoint {last.tree_size}: not signed by this ledger's key")
    frontier = [bytes.fromhex(h) for h in json.loads(last.frontier)]
    if merkle.frontier_root(frontier).hex() != last.root_hash:
        raise LedgerError(f"checkpoint {last.tree_size}: stored frontier does not match its root")
    if size != last.tree_size:
        raise LedgerError(f"ledger has {size} entries, last checkpoint signs {last.tree_size}")
    return last.tree_size, frontier


QUEUE = LedgerQueue.__table__.c  # type: ignore[attr-defined]
ENTRIES = LedgerEntry.__table__.c  # type: ignore[attr-defined]


def _sequence(conn: Connection, size: int, limit: int, now: datetime) -> list[bytes]:
    """Append the next `limit` queued ratings as leaves size, size + 1, ...; their hashes.

    All in SQL: the queue's open part is read through its partial index in leaf order
    (recorded_at, id), numbered by row_number() and inserted in one statement, which
    also returns the new leaves (RETURNING); one more statement stamps the queue rows.
    The leaf hash comes from the queue row (written with the rating, frozen by a
    trigger; `verify` compares it with the rating's), so no join to `ratings` is needed;
    only a row queued before migration 0010 has none and is looked up."""
    picked = _next_leaves(conn.dialect.name, size, limit, now)
    columns = ["leaf_index", "rating_id", "leaf_hash", "sequenced_at"]
    result = conn.execute(
        insert(LedgerEntry)
        .from_select(columns, picked)
        .returning(ENTRIES.leaf_index, ENTRIES.leaf_hash)
    )
    # The driver's rows as they are: SQLAlchemy's Row objects cost more than the rest
    # of reading 100k leaves (both columns are plain integers and strings).
    added = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    if not added:
        return []
    stamped = conn.execute(_stamp(conn, size, len(added)), {"now": now}).rowcount
    if stamped != len(added):
        raise LedgerError(f"sequenced {len(added)} queued ratings but stamped {stamped}")
    # RETURNING promises no order: each hash goes to its own leaf's place.
    leaves = [b""] * len(added)
    for index, leaf in added:
        leaves[index - size] = bytes.fromhex(leaf)
    return leaves


def _next_leaves(dialect: str, size: int, limit: int, now: datetime) -> Any:
    """SELECT of the next `limit` open queue rows as ledger entries from leaf `size` on.

    SQLite numbers the indexed scan itself: row_number() over the open index's order
    streams and stops at the LIMIT (a LIMITed subquery was materialised and sorted again
    for the window). PostgreSQL gets LIMIT first, then the number: with the window over
    the whole open queue it may sort all of it for every batch (quadratic after a bulk
    load of millions)."""
    q: Any = QUEUE
    if dialect == "postgresql":
        q = (
            select(QUEUE.rating_id, QUEUE.recorded_at, QUEUE.leaf_hash)
            .where(QUEUE.sequenced_at.is_(None))
            .order_by(QUEUE.recorded_at, QUEUE.rating_id)
            .limit(limit)
            .subquery()
            .c
        )
    leaf_hash = func.coalesce(
        q.leaf_hash,
        select(Rating.leaf_hash).where(Rating.id == q.rating_id).scalar_subquery(),
    )
    picked = select(
        (size - 1 + func.row_number().over(order_by=[q.recorded_at, q.rating_id])).label(
            "leaf_index"
        ),
        q.rating_id,
        leaf_hash.label("leaf_hash"),
        literal(now, DateTime(timezone=True)).label("sequenced_at"),
    )
    if dialect == "postgresql":
        return picked
    return picked.where(q.sequenced_at.is_(None)).order_by(q.recorded_at, q.rating_id).limit(limit)


def _stamp(conn: Connection, size: int, count: int) -> Any:
    """The statement marking the queue rows just sequenced (leaves size .. size+count-1).

    SQLite: the checkpoint's transaction holds the database's only write lock (BEGIN
    IMMEDIATE), so the open queue cannot have changed since the INSERT read it: the
    rows to stamp are the first `count` of its open index, found by rowid without a
    probe of the primary key per rating. PostgreSQL: writers commit meanwhile, and a
    rating recorded earlier may become visible between the two statements, so the
    rows are found by the rating ids the ledger now holds."""
    if conn.dialect.name == "sqlite":
        open_rows = LedgerQueue.__table__.alias("open_rows")  # type: ignore[attr-defined]
        first = (
            select(literal_column("open_rows.rowid"))
            .select_from(open_rows)
            .where(open_rows.c.sequenced_at.is_(None))
            .order_by(open_rows.c.recorded_at, open_rows.c.rating_id)
            .limit(count)
        )
        return (
            update(LedgerQueue)
            .where(literal_column("rowid").in_(first))
            .values(sequenced_at=bindparam("now"))
        )
    new = select(ENTRIES.rating_id).where(ENTRIES.leaf_index >= size)
    return (
        update(LedgerQueue)
        .where(QUEUE.rating_id.in_(new), QUEUE.sequenced_at.is_(None))
        .values(sequenced_at=bindparam("now"))
    )


def checkpoint(engine: Engine, key: LedgerKey, *, batch: int = 50_000) -> Any | None:
    """Sequence every pending rating and sign the new tree. None when nothing was pending.

    The tree is extended from the last checkpoint's stored frontier (its right-edge
    subtree roots): a checkpoint hashes only the new leaves, never the whole tree."""
    with engine.begin() as conn:
        _lock(conn)
        size, frontier = _previous(conn, key)
        start = size
        while leaves := _sequence(conn, size, batch, datetime.now(UTC)):
            frontier = merkle.frontier_extend(frontier, size, leaves)
            size += len(leaves)
        if size == start:
            return None
        root = merkle.frontier_root(frontier)
        note = note_for(key.origin, size, root)
        row = {
            "tree_size": size,
            "root_hash": root.hex(),
            "timestamp": datetime.now(UTC),
            "note": note,
            "signature": base64.b64encode(key.private.sign(note.encode())).decode(),
            "key_id": key.key_id,
            "frontier": json.dumps([h.hex() for h in frontier]),
        }
        conn.execute(Checkpoint.__table__.insert(), [row])
        return conn.execute(select(Checkpoint).where(Checkpoint.tree_size == size)).first()


# Leaves up to a signed size never change (append-only), so one list per size can be
# kept: repeated proof requests against the latest checkpoint read the ledger once.
_LEAF_CACHE: dict[tuple[str, int], list[bytes]] = {}


def _leaves(conn: Connection, size: int) -> list[bytes]:
    key = (str(conn.engine.url), size)
    if key not in _LEAF_CACHE:
        _LEAF_CACHE.clear()  # only the newest size is worth keeping
        _LEAF_CACHE[key] = _read_leaves(conn, size)
    return _LEAF_CACHE[key]


def _read_leaves(conn: Connection, size: int) -> list[bytes]:
    rows = conn.execute(
        select(LedgerEntry.leaf_hash)
        .where(LedgerEntry.leaf_index < size)
        .order_by(LedgerEntry.leaf_index)
    )
    return [bytes.fromhex(h) for (h,) in rows]


def inclusion(conn: Connection, rating_id: str) -> dict[str, Any]:
    """Leaf index and inclusion proof of a rating against the latest checkpoint."""
    entry = conn.execute(select(LedgerEntry).where(LedgerEntry.rating_id == rating_id)).first()
    cp = latest(conn)
    if entry is None or cp is None or entry.leaf_index >= cp.tree_size:
        exists = conn.execute(select(Rating.id).where(Rating.id == rating_id)).first()
        if exists is None:
            raise NotFound("There is no rating %(id)s.", id=rating_id[:40])
        raise NotFound(
            "Rating %(id)s is not in a signed checkpoint yet; try again in a few minutes.",
            code="not_yet_sequenced",
            id=rating_id,
        )
    proof = merkle.inclusion_proof(_leaves(conn, cp.tree_size), entry.leaf_index, cp.tree_size)
    return {
        "id": rating_id,
        "leaf_index": entry.leaf_index,
        "leaf_hash": entry.leaf_hash,
        "tree_size": cp.tree_size,
        "proof": [p.hex() for p in proof],
        "checkpoint": cp,
    }


def consistency(conn: Connection, first: int, second: int) -> list[str]:
    cp = latest(conn)
    top = cp.tree_size if cp else 0
    if not 1 <= first <= second <= top:
        raise BadRequest(
            "Sizes must satisfy 1 <= from <= to <= %(size)s.",
            field="from",
            code="invalid_range",
            size=top,
        )
    return [p.hex() for p in merkle.consistency_proof(_leaves(conn, second), first, second)]


@dataclass(frozen=True)
class Problem:
    rating_id: str | None
    message: str

    def __str__(self) -> str:
        return f"rating {self.rating_id}: {self.message}" if self.rating_id else self.message


def _check_rating(r: Any, approved: dict[str, set[str]]) -> Iterator[Problem]:
    recomputed = rating_leaf_hash(r._mapping)
    if recomputed != r.leaf_hash:
        yield Problem(r.id, "stored data no longer matches its leaf hash")
    if (
        r.body is not None
        and not r.redacted
        and r.text_hash != text_commitment(bytes.fromhex(r.salt), r.body)
    ):
        yield Problem(r.id, "text no longer matches its commitment")
    # The commitment cannot speak for a hidden or erased text: the takedown trail must.
    if r.hidden and r.id not in approved:
        yield Problem(r.id, "text hidden without an approved takedown")
    if r.redacted and (r.body or not r.hidden or "personal_data" not in approved.get(r.id, ())):
        yield Problem(r.id, "text marked erased without an approved personal-data takedown")


TEXT_COLUMNS = (RatingText.salt, RatingText.body, RatingText.redacted, RatingText.hidden)


def _approved_takedowns(conn: Connection) -> dict[str, set[str]]:
    """Rating id -> reasons of its approved takedowns (few: read once, not per rating)."""
    rows = conn.execute(
        select(TakedownRequest.rating_id, TakedownRequest.reason)
        .join(TakedownDecision, TakedownDecision.request_id == TakedownRequest.id)
        .where(TakedownDecision.decision == "approved")
    )
    approved: dict[str, set[str]] = {}
    for rating_id, reason in rows:
        approved.setdefault(rating_id, set()).add(reason)
    return approved


def _sequenced(conn: Connection) -> Any:
    """Ledger entries in leaf order, each with its rating and text (if still there)."""
    cols = [*Rating.__table__.c, *TEXT_COLUMNS]
    stmt = (
        select(
            LedgerEntry.leaf_index,
            LedgerEntry.leaf_hash.label("ledger_hash"),
            LedgerEntry.rating_id.label("entry_rating"),
            *cols,
        )
        .select_from(LedgerEntry)
        .outerjoin(Rating, Rating.id == LedgerEntry.rating_id)
        .outerjoin(RatingText, RatingText.rating_id == Rating.id)
        .order_by(LedgerEntry.leaf_index)
    )
    return conn.execution_options(yield_per=10_000).execute(stmt)


def _check_entry(r: Any, index: int, approved: dict[str, set[str]]) -> Iterator[Problem]:
    if r.id is None:
        yield Problem(r.entry_rating, f"leaf {index}: the rating row is gone")
        return
    yield from _check_rating(r, approved)
    if r.text_hash is not None and r.body is None:
        yield Problem(r.id, f"leaf {index}: its text row is gone")
    if r.ledger_hash != r.leaf_hash:
        yield Problem(r.id, f"leaf {index}: ledger and rating hashes differ")


def verify(engine: Engine, public: Ed25519PublicKey, origin: str) -> list[Problem]:
    """Recompute every leaf, the tree at each checkpoint and each signature."""
    problems: list[Problem] = []
    # One snapshot for the whole run (PostgreSQL: REPEATABLE READ), and on SQLite a
    # read transaction that never blocks rating writers.
    with reading(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        checkpoints = {c.tree_size: c for c in conn.execute(select(Checkpoint))}
        approved = _approved_takedowns(conn)
        top = max(checkpoints, default=0)
        frontier: list[bytes] = []
        for index, r in enumerate(_sequenced(conn)):
            if r.leaf_index != index:
                problems.append(Problem(None, f"ledger gap: leaf {index} is missing"))
                break
            problems.extend(_check_entry(r, index, approved))
            frontier = merkle.frontier_append(frontier, index, bytes.fromhex(r.ledger_hash))
            if index + 1 in checkpoints:
                cp = checkpoints.pop(index + 1)
                problems.extend(_check_checkpoint(cp, frontier, public, origin))
            if index == top:
                problems.append(
                    Problem(
                        None,
                        f"ledger entries beyond the last checkpoint "
                        f"({top}): the checkpointer will refuse to run",
                    )
                )
        problems.extend(
            Problem(None, f"checkpoint {s}: covers leaves that do not exist")
            for s in sorted(checkpoints)
        )
        problems.extend(_verify_pending(conn, approved))
    return problems


def _check_checkpoint(
    cp: Any, frontier: list[bytes], public: Ed25519PublicKey, origin: str
) -> Iterator[Problem]:
    root = merkle.frontier_root(frontier)
    if root.hex() != cp.root_hash:
        yield Problem(
            None,
            f"checkpoint {cp.tree_size}: root does not match the ledger leaves "
            "(a sequenced leaf was changed)",
        )
    if cp.note != note_for(origin, cp.tree_size, bytes.fromhex(cp.root_hash)):
        yield Problem(None, f"checkpoint {cp.tree_size}: note does not match its fields")
    try:
        public.verify(base64.b64decode(cp.signature), cp.note.encode())
    except (InvalidSignature, ValueError):
        yield Problem(None, f"checkpoint {cp.tree_size}: bad signature")


def _verify_pending(conn: Connection, approved: dict[str, set[str]]) -> Iterator[Problem]:
    """Ratings not sequenced yet: their hashes, and that the checkpointer will see them."""
    seq = select(LedgerEntry.rating_id).where(LedgerEntry.rating_id == Rating.id)
    cols = [*Rating.__table__.c, *TEXT_COLUMNS]
    stmt = (
        select(
            *cols,
            QUEUE.rating_id.label("queued"),
            QUEUE.sequenced_at.label("stamped"),
            QUEUE.leaf_hash.label("queued_hash"),
        )
        .outerjoin(RatingText, RatingText.rating_id == Rating.id)
        .outerjoin(LedgerQueue, QUEUE.rating_id == Rating.id)
        .where(~seq.exists())
    )
    for r in conn.execution_options(yield_per=10_000).execute(stmt):
        yield from _check_rating(r, approved)
        if r.queued is None:
            yield Problem(r.id, "not in the ledger queue: the checkpointer would never sequence it")
        elif r.stamped is not None:
            yield Problem(r.id, "marked sequenced in the ledger queue but has no ledger entry")
        elif r.queued_hash is not None and r.queued_hash != r.leaf_hash:
            yield Problem(
                r.id, "queued with another leaf hash than its own: the checkpointer would sign it"
            )


def recorded(cp: Any) -> datetime:
    return utc(cp.timestamp)
