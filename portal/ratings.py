"""The one write path for ratings: record() validates, normalises, hashes and stores.

Counter, phone and web adapters all end here. In ONE transaction it inserts the
rating, its text, the rollup increments and an outbox row for search; the receipt
is returned only after that transaction commits (design.md invariants 1-6).
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, text

from moderation.flags import flag_texts
from portal import page_cache, rollups
from portal.canonical import rating_leaf_hash, text_commitment, timestamp, utc
from portal.errors import Conflict, Invalid
from portal.ids import new_id
from portal.models import (
    CHANNELS,
    STAGES,
    Branch,
    Insurer,
    LedgerQueue,
    Outbox,
    Rating,
    RatingText,
    Staff,
)
from portal.prepared import Prepared
from portal.writer import retrying

MAX_TEXT = 2000
CHINA = timezone(timedelta(hours=8))  # no DST: a fixed offset is exact
SCALES = {"counter": (3,), "phone": (3, 5), "web": (5,)}
ALLOWED_CONTROLS = {"\n", "\t"}
EARLIEST_YEAR = 2000  # also keeps the canonical "YYYY-..." timestamps four digits long
LOOKUP_CHUNK = 500  # idempotency keys per IN (...): below every bound-parameter limit


@dataclass(frozen=True)
class RatingIn:
    """What an adapter hands to record(). Codes, not ids: adapters speak the domain."""

    insurer: str
    stage: str
    channel: str
    scale: int  # 5: 1..5, 5 best; 3: 1 satisfied, 2 basically satisfied, 3 dissatisfied
    value: int
    occurred_at: datetime
    source: str  # who submitted it: "device:12", "client:3", "web"
    idempotency_key: str
    branch: str | None = None
    staff_no: str | None = None
    text: str | None = None
    verified: bool = True
    corrects: str | None = None


@dataclass(frozen=True)
class Receipt:
    id: str
    leaf_hash: str
    recorded_at: datetime
    replayed: bool = False

    def as_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "leaf_hash": self.leaf_hash,
            "recorded_at": timestamp(self.recorded_at),
        }


def normalise_score(scale: int, value: int) -> tuple[int, bool, bool]:
    """(score 0-100, top box, bottom box). 5-point: (v-1)*25; 3-level: 100/50/0."""
    if scale == 5:
        return (value - 1) * 25, value == 5, value <= 2
    return {1: 100, 2: 50, 3: 0}[value], value == 1, value == 3


def clean_text(text: str | None, field: str = "text") -> str | None:
    """NFC, CRLF -> LF, trimmed; None when empty. Raises Invalid for bad text."""
    if text is None:
        return None
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").strip()
    if not text:
        return None
    bad = next(
        (
            c
            for c in text
            if unicodedata.category(c) in ("Cc", "Cs", "Co") and c not in ALLOWED_CONTROLS
        ),
        None,
    )
    if bad is not None:
        raise Invalid(
            "The text contains a control character (U+%(cp)s).",
            field=field,
            code="control_character",
            cp=f"{ord(bad):04X}",
        )
    if len(text) > MAX_TEXT:
        raise Invalid(
            "The text is %(length)s characters long; at most %(max)s are allowed.",
            field=field,
            code="text_too_long",
            length=len(text),
            max=MAX_TEXT,
        )
    return text


def validate(r: RatingIn, now: datetime, skew: int) -> tuple[str | None, datetime]:
    """Checks that need no database. Returns the cleaned text and UTC occurred_at."""
    if r.stage not in STAGES:
        raise Invalid(
            "Unknown stage “%(value)s”: use issuance, renewal or claim.",
            field="stage",
            code="invalid_stage",
            value=str(r.stage)[:40],
        )
    if r.channel not in CHANNELS:
        raise Invalid(
            "Unknown channel “%(value)s”: use counter, phone or web.",
            field="channel",
            code="invalid_channel",
            value=str(r.channel)[:40],
        )
    if type(r.scale) is not int or r.scale not in SCALES[r.channel]:
        raise Invalid(
            "The %(channel)s channel does not rate on a %(scale)s-point scale.",
            field="scale",
            code="invalid_scale",
            channel=r.channel,
            scale=r.scale,
        )
    if type(r.value) is not int or not 1 <= r.value <= r.scale:
        raise Invalid(
            "Score %(value)s is out of range: use 1 to %(scale)s.",
            field="value",
            code="score_out_of_range",
            value=r.value,
            scale=r.scale,
        )
    if r.occurred_at.tzinfo is None:
        raise Invalid(
            "The time needs a time zone offset.", field="occurred_at", code="missing_offset"
        )
    if r.occurred_at.year < EARLIEST_YEAR:
        raise Invalid(
            "The time %(value)s is too far in the past.",
            field="occurred_at",
            code="time_too_old",
            value=r.occurred_at.isoformat(),
        )
    occurred = utc(r.occurred_at)
    if occurred > now + timedelta(seconds=skew):
        raise Invalid(
            "The time %(value)s is in the future.",
            field="occurred_at",
            code="time_in_future",
            value=r.occurred_at.isoformat(),
        )
    check_idempotency_key(r.idempotency_key)
    return clean_text(r.text), occurred


def check_idempotency_key(key: str) -> str:
    """Every channel's writes carry one: 1 to 128 printable characters."""
    if not key or len(key) > 128 or not key.isprintable():
        raise Invalid(
            "An idempotency key of 1 to 128 printable characters is required.",
            field="idempotency_key",
            code="invalid_idempotency_key",
        )
    return key


_FIELDS = tuple(f.name for f in fields(RatingIn))


def fingerprint(r: RatingIn, text: str | None, occurred: datetime) -> str:
    # The fields by name: what dataclasses.asdict gives for these flat values, without
    # its deep copies (a fifth of the bulk path's time).
    body = {f: getattr(r, f) for f in _FIELDS} | {"text": text, "occurred_at": timestamp(occurred)}
    body.pop("idempotency_key")
    raw = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


_INSURER = Prepared(select(Insurer.id).where(Insurer.code == bindparam("code")))
_BRANCH = Prepared(
    select(Branch.id).where(Branch.insurer_id == bindparam("iid"), Branch.code == bindparam("code"))
)
_STAFF = Prepared(
    select(Staff.id, Staff.branch_id).where(
        Staff.insurer_id == bindparam("iid"), Staff.staff_no == bindparam("no"), Staff.active
    )
)


@dataclass(frozen=True)
class _Id:
    id: int


@dataclass(frozen=True)
class _StaffId:
    id: int
    branch_id: int | None


class Subjects:
    """Resolves insurer/branch/staff codes to rows, cached for one batch (or, in a bulk
    load, for all of them: see record_many)."""

    def __init__(self, conn: Connection | None) -> None:
        self.conn = conn
        self.cache: dict[tuple[Any, ...], Any] = {}

    @classmethod
    def known(
        cls,
        *,
        insurer: tuple[str, int],
        branch: tuple[str, int] | None = None,
        staff: tuple[str, int, int | None] | None = None,
    ) -> Subjects:
        """Seeded with codes an adapter has just read along with their ids (insurer
        (code, id), branch (code, id), an active staff member (staff_no, id, branch id)),
        so record() resolves them without querying again. What is not given is looked up."""
        subjects = cls(None)
        code, iid = insurer
        subjects.cache[("i", code)] = _Id(iid)
        if branch is not None:
            subjects.cache[("b", iid, branch[0])] = _Id(branch[1])
        if staff is not None:
            subjects.cache[("s", iid, staff[0])] = _StaffId(staff[1], staff[2])
        return subjects

    def _one(self, key: tuple[Any, ...], stmt: Prepared, **params: Any) -> Any:
        # Statements are built once (module level): only a cache miss touches SQL.
        try:
            return self.cache[key]
        except KeyError:
            assert self.conn is not None
            found = self.cache[key] = stmt.first(self.conn, params)
            return found

    def resolve(self, r: RatingIn) -> tuple[int, int | None, int | None]:
        ins = self._one(("i", r.insurer), _INSURER, code=r.insurer)
        if ins is None:
            raise Invalid(
                "Unknown insurer “%(value)s”.",
                field="insurer",
                code="unknown_insurer",
                value=r.insurer,
            )
        branch_id = staff_id = None
        if r.branch is not None:
            row = self._one(("b", ins.id, r.branch), _BRANCH, iid=ins.id, code=r.branch)
            if row is None:
                raise Invalid(
                    "Insurer %(insurer)s has no branch “%(value)s”.",
                    field="branch",
                    code="unknown_branch",
                    insurer=r.insurer,
                    value=r.branch,
                )
            branch_id = row.id
        if r.staff_no is not None:
            row = self._one(("s", ins.id, r.staff_no), _STAFF, iid=ins.id, no=r.staff_no)
            if row is None:
                raise Invalid(
                    "Insurer %(insurer)s has no staff member with number “%(staff_no)s”.",
                    field="staff_no",
                    code="unknown_staff",
                    insurer=r.insurer,
                    staff_no=r.staff_no,
                )
            staff_id = row.id
            branch_id = branch_id if branch_id is not None else row.branch_id
        return ins.id, branch_id, staff_id

    def check_correction(self, r: RatingIn, insurer_id: int) -> None:
        if r.corrects is None:
            return
        row = self.conn.execute(select(Rating.insurer_id).where(Rating.id == r.corrects)).first()
        if row is None or row.insurer_id != insurer_id:
            raise Invalid(
                "There is no rating %(id)s of this insurer to correct.",
                field="corrects",
                code="unknown_rating",
                id=r.corrects,
            )


_FOUND = (
    Rating.id,
    Rating.leaf_hash,
    Rating.recorded_at,
    Rating.fingerprint,
    Rating.source,
    Rating.idempotency_key,
)


# One key: a live rating's own lookup, on the driver (portal/prepared.py).
_LOOKUP_ONE = Prepared(
    select(*_FOUND).where(
        Rating.source == bindparam("s0"), Rating.idempotency_key == bindparam("k0")
    )
)


@functools.lru_cache(maxsize=32)
def _lookup(n: int) -> Any:
    """The statement for n keys, built once per n. Plain SQL: SQLAlchemy compiles a
    values() construct anew on every execution (0.2 s for 500 keys, a third of the
    bulk path's time), while a text() statement's compiled form is cached."""
    rows = ", ".join(f"(:s{i}, :k{i})" for i in range(n))
    names = ", ".join(f"r.{c.key}" for c in _FOUND)
    sql = (
        f"WITH wanted (s, k) AS (VALUES {rows}) SELECT {names} FROM wanted "
        "JOIN ratings r ON r.source = wanted.s AND r.idempotency_key = wanted.k"
    )
    return text(sql).columns(*_FOUND)


def _existing_many(conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """Stored ratings by (source, idempotency key), LOOKUP_CHUNK keys per query.

    Many keys are joined from a VALUES list, which both databases answer with one index
    probe per key (SQLite 3.40 scans the table for a row-value IN list instead)."""
    wanted = list(dict.fromkeys(keys))
    found: dict[tuple[str, str], Any] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        params = {}
        for i, (source, key) in enumerate(chunk):
            params[f"s{i}"], params[f"k{i}"] = source, key
        if len(chunk) == 1:
            rows = _LOOKUP_ONE.rows(conn, params)
        else:
            rows = conn.execute(_lookup(len(chunk)), params)
        for row in rows:
            found[(row.source, row.idempotency_key)] = row
    return found


@dataclass(frozen=True)
class _Stored:
    """What a replay needs of a rating stored earlier in the same batch."""

    id: str
    leaf_hash: str
    recorded_at: datetime
    fingerprint: str


def _replay(row: Any, fp: str) -> Receipt:
    """The receipt of an already stored rating, if this request is the same one."""
    if row.fingerprint != fp:
        raise Conflict(
            "This idempotency key was already used for a different rating.",
            field="idempotency_key",
            code="idempotency_conflict",
        )
    return Receipt(row.id, row.leaf_hash, utc(row.recorded_at), replayed=True)


def _build(
    r: RatingIn,
    subjects: Subjects,
    text: str | None,
    occurred: datetime,
    fp: str,
    recorded: datetime,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    insurer_id, branch_id, staff_id = subjects.resolve(r)
    subjects.check_correction(r, insurer_id)
    score, top, bottom = normalise_score(r.scale, r.value)
    rid = new_id()
    salt = secrets.token_bytes(16)
    row: dict[str, Any] = dict(
        id=rid,
        insurer_id=insurer_id,
        branch_id=branch_id,
        staff_id=staff_id,
        stage=r.stage,
        channel=r.channel,
        scale=r.scale,
        value=r.value,
        score=score,
        top_box=top,
        bottom_box=bottom,
        verified=r.verified,
        occurred_at=occurred,
        recorded_at=recorded,
        text_hash=text_commitment(salt, text) if text else None,
        corrects_id=r.corrects,
        source=r.source,
        idempotency_key=r.idempotency_key,
        fingerprint=fp,
    )
    row["leaf_hash"] = rating_leaf_hash(row)
    text_row = dict(rating_id=rid, salt=salt.hex(), body=text) if text else None
    return row, text_row


# A channel's own bookkeeping for a newly stored rating (the counter marks its service
# session rated), run inside the rating's transaction: raising there stores nothing.
Within = Callable[[Connection, dict[str, Any]], None]


def record(
    engine: Engine,
    rating: RatingIn,
    *,
    skew: int = 120,
    within: Within | None = None,
    subjects: Subjects | None = None,
) -> Receipt:
    """Store one rating; the receipt means it is committed. `subjects`: codes the
    adapter already resolved (Subjects.known), so they are not looked up again."""
    return record_batch(engine, [rating], skew=skew, within=within, subjects=subjects)[0]


def record_batch(
    engine: Engine,
    ratings: Sequence[RatingIn],
    *,
    skew: int = 120,
    recorded_at: Callable[[RatingIn], datetime] | None = None,
    within: Within | None = None,
    subjects: Subjects | None = None,
) -> list[Receipt]:
    """Store many ratings in one transaction: all or nothing.

    `recorded_at` is only for loading historical data (demo, imports): it gives each
    rating's recording time. Live writes are recorded now.
    """

    def unit(conn: Connection) -> list[Receipt]:
        return record_many(
            conn, ratings, skew=skew, recorded_at=recorded_at, within=within, subjects=subjects
        )

    # Group commit: committed with the ratings of concurrent callers, each in its own
    # savepoint; returns only after the COMMIT. A concurrent request with the same
    # idempotency key that won the race is found on the retry and answered as a replay.
    return retrying(engine, unit)


Timings = dict[str, float]


# Built once, run on the driver (portal/prepared.py).
_INSERT_RATING = Prepared(Rating.__table__.insert())
_INSERT_TEXT = Prepared(RatingText.__table__.insert())
_INSERT_OUTBOX = Prepared(Outbox.__table__.insert())
_INSERT_QUEUE = Prepared(LedgerQueue.__table__.insert())


def record_many(
    conn: Connection,
    ratings: Sequence[RatingIn],
    *,
    skew: int = 120,
    recorded_at: Callable[[RatingIn], datetime] | None = None,
    within: Within | None = None,
    subjects: Subjects | None = None,
    timings: Timings | None = None,
) -> list[Receipt]:
    """Store many ratings in the caller's transaction: what record() does, batched.

    record() and record_batch() are this function on a transaction of their own, so a
    bulk load (bench/scale.py) goes through the very same validation, normalisation,
    hashing, rollups, outbox and ledger queue; only the database round trips are
    shared by the batch (one idempotency lookup per source, one executemany per table).
    Raises the error record() would raise for the first bad rating, in order; the
    caller's transaction must then be rolled back. A key repeated within the batch is
    a replay of its first use, as if the ratings had been recorded one by one.
    `subjects` may be kept across batches (insurer/branch/staff codes -> ids);
    `timings`, when given, accumulates seconds per phase.
    """
    clock = time.perf_counter
    t0 = clock()
    now = datetime.now(UTC)
    if subjects is None:
        subjects = Subjects(conn)
    subjects.conn = conn
    checked: list[tuple[str | None, datetime, str] | Invalid] = []
    for r in ratings:
        try:
            text, occurred = validate(r, now, skew)
        except Invalid as err:  # raised below, in order, as record() would
            checked.append(err)
            continue
        checked.append((text, occurred, fingerprint(r, text, occurred)))
    stored = _existing_many(
        conn,
        [(r.source, r.idempotency_key) for r, c in zip(ratings, checked, strict=True)
         if not isinstance(c, Invalid)],
    )  # fmt: skip
    receipts: list[Receipt] = []
    rows: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    fresh: dict[tuple[str, str], _Stored] = {}
    for r, c in zip(ratings, checked, strict=True):
        if isinstance(c, Invalid):
            raise c
        text, occurred, fp = c
        ident = (r.source, r.idempotency_key)
        if ident in stored:
            receipts.append(_replay(stored[ident], fp))
            continue
        if ident in fresh:  # the same key earlier in this batch: as if already stored
            receipts.append(_replay(fresh[ident], fp))
            continue
        recorded = utc(recorded_at(r)) if recorded_at else now
        row, text_row = _build(r, subjects, text, occurred, fp, recorded)
        rows.append(row)
        texts.extend([text_row] if text_row else [])
        fresh[ident] = _Stored(row["id"], row["leaf_hash"], recorded, fp)
        receipts.append(Receipt(row["id"], row["leaf_hash"], recorded))
    t1 = clock()
    if rows:
        page_cache.lock_versions(conn, (row["insurer_id"] for row in rows))  # lock order
        _INSERT_RATING.executemany(conn, rows)
        if texts:
            _INSERT_TEXT.executemany(conn, texts)
            flag_texts(conn, [(t["rating_id"], t["body"], None) for t in texts], now)
        t2 = clock()
        _INSERT_OUTBOX.executemany(
            conn, [{"topic": "rating", "ref": row["id"], "created_at": now} for row in rows]
        )
        _INSERT_QUEUE.executemany(
            conn,
            [
                {
                    "rating_id": row["id"],
                    "recorded_at": row["recorded_at"],
                    "leaf_hash": row["leaf_hash"],
                }
                for row in rows
            ],
        )
        for row in rows if within else ():
            within(conn, row)
        t3 = clock()
        # Last: the rollup rows are the ones concurrent ratings share (one per day, branch,
        # stage and channel), and PostgreSQL holds their row locks until COMMIT; written
        # last, they are held for the least time (counter ingest, docs/performance.md).
        rollups.add(conn, rows, day_of)
        if timings is not None:
            t4 = clock()
            for phase, seconds in (
                ("prepare", t1 - t0), ("insert", t2 - t1), ("queues", t3 - t2), ("rollups", t4 - t3)
            ):  # fmt: skip
                timings[phase] = timings.get(phase, 0.0) + seconds
    return receipts


def day_of(occurred: datetime) -> date:
    """The China-time calendar day a rating counts for."""
    return utc(occurred).astimezone(CHINA).date()
