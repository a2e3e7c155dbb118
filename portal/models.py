"""SQLModel tables. Append-only tables are listed in APPEND_ONLY (enforced by triggers)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

STAGES = ("issuance", "renewal", "claim")
CHANNELS = ("counter", "phone", "web")
ROLES = ("teller", "agent", "call_agent", "adjuster")
USER_ROLES = ("regulator", "insurer", "admin")

# Rows of these tables are never updated or deleted, by anyone (design.md invariant 1, 3).
APPEND_ONLY = (
    "ratings",
    "ledger_entries",
    "checkpoints",
    "audit_events",
    "takedown_decisions",
    "reply_revisions",
    "ranking_snapshots",
)
SNAPSHOT_SCOPES = ("public", "industry", "regulator")
TAKEDOWN_REASONS = ("personal_data", "abuse", "defamation", "spam", "unrelated")


class Stage(StrEnum):
    issuance = "issuance"
    renewal = "renewal"
    claim = "claim"


class Channel(StrEnum):
    counter = "counter"
    phone = "phone"
    web = "web"


def utcnow() -> datetime:
    return datetime.now(UTC)


def tz_field(*, nullable: bool = False, index: bool = False, now: bool = False) -> Any:
    """A timezone-aware timestamp column (timestamptz on PostgreSQL)."""
    column = Column(
        DateTime(timezone=True), nullable=nullable, index=index, default=utcnow if now else None
    )
    if now:
        return Field(default_factory=utcnow, sa_column=column)
    return Field(default=None, sa_column=column)


def flag(default: bool) -> Any:
    """A boolean with a database default, so Core inserts may leave it out."""
    return Field(default=default, sa_column_kwargs={"server_default": text(str(default).lower())})


class Insurer(SQLModel, table=True):
    __tablename__ = "insurers"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=16, unique=True)
    name: str = Field(max_length=100)
    created_at: datetime = tz_field(now=True)
    # The insurer's policy-number format (a regular expression): masked in published texts
    policy_format: str | None = Field(default=None, max_length=200)


class Branch(SQLModel, table=True):
    __tablename__ = "branches"
    __table_args__ = (UniqueConstraint("insurer_id", "code"),)
    id: int | None = Field(default=None, primary_key=True)
    insurer_id: int = Field(foreign_key="insurers.id", index=True)
    code: str = Field(max_length=32)
    name: str = Field(max_length=100)
    region: str = Field(max_length=6, index=True)  # GB/T 2260 code, e.g. 430200


class Staff(SQLModel, table=True):
    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("insurer_id", "staff_no"),)
    id: int | None = Field(default=None, primary_key=True)
    insurer_id: int = Field(foreign_key="insurers.id", index=True)
    branch_id: int | None = Field(default=None, foreign_key="branches.id", index=True)
    staff_no: str = Field(max_length=32)
    name: str = Field(max_length=50)
    role: str = Field(max_length=16)
    active: bool = flag(True)
    # The staff member's own mobile as a keyed hash (like Policy.phone_hash): a return
    # visit to this number would reach the agent, not the customer (a fraud signal).
    phone_hash: str | None = Field(default=None, max_length=64, index=True)


class Rating(SQLModel, table=True):
    """One customer's score. Append-only: corrections are new rows with `corrects_id`."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("source", "idempotency_key"),
        Index("ix_ratings_insurer_occurred", "insurer_id", "occurred_at"),
        # The written reviews of an insurer, newest first, without visiting the others
        # (portal/reviews.py lists and counts them with `text_hash IS NOT NULL`).
        Index(
            "ix_ratings_insurer_reviews",
            "insurer_id",
            "occurred_at",
            "id",
            sqlite_where=text("text_hash IS NOT NULL"),
            postgresql_where=text("text_hash IS NOT NULL"),
        ),
    )
    id: str = Field(primary_key=True, max_length=32)
    insurer_id: int = Field(foreign_key="insurers.id")
    branch_id: int | None = Field(default=None, foreign_key="branches.id", index=True)
    staff_id: int | None = Field(default=None, foreign_key="staff.id", index=True)
    stage: str = Field(max_length=10)
    channel: str = Field(max_length=10)
    scale: int
    value: int
    score: int  # normalised 0-100
    top_box: bool
    bottom_box: bool
    verified: bool
    occurred_at: datetime = tz_field()
    recorded_at: datetime = tz_field(index=True)
    text_hash: str | None = Field(default=None, max_length=64)
    corrects_id: str | None = Field(default=None, foreign_key="ratings.id", max_length=32)
    source: str = Field(max_length=64)  # who submitted: device:N, client:N, web
    idempotency_key: str = Field(max_length=128)
    fingerprint: str = Field(max_length=64)  # hash of the normalised request body
    leaf_hash: str = Field(max_length=64)


class RatingText(SQLModel, table=True):
    """The written review beside its rating; the rating commits to it by hash."""

    __tablename__ = "rating_texts"
    rating_id: str = Field(primary_key=True, foreign_key="ratings.id", max_length=32)
    salt: str = Field(max_length=32)
    body: str = Field(sa_column=Column(Text, nullable=False))
    hidden: bool = flag(False)  # an approved takedown hides it; the score keeps counting
    redacted: bool = flag(False)  # personal data removed from `body`; commitment kept
    hidden_at: datetime | None = tz_field(nullable=True)
    hidden_reason: str | None = Field(default=None, max_length=20)  # the approved request's


class Reply(SQLModel, table=True):
    """The public thread under a rating: one insurer reply, one reviewer follow-up.

    The insurer's reply can be edited; every version is kept in reply_revisions."""

    __tablename__ = "replies"
    __table_args__ = (UniqueConstraint("rating_id", "author", name="uq_replies_rating_author"),)
    id: int | None = Field(default=None, primary_key=True)
    rating_id: str = Field(foreign_key="ratings.id", index=True, max_length=32)
    insurer_id: int | None = Field(default=None, foreign_key="insurers.id")
    author: str = Field(max_length=16)  # insurer | reviewer
    user_id: int | None = Field(default=None, foreign_key="users.id")
    body: str = Field(sa_column=Column(Text, nullable=False))
    change_made: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = tz_field(now=True)
    updated_at: datetime | None = tz_field(nullable=True)
    working_days: int | None = None  # from the rating to the first insurer reply


class ReplyRevision(SQLModel, table=True):
    """Every version of a reply, the first one included (append-only)."""

    __tablename__ = "reply_revisions"
    id: int | None = Field(default=None, primary_key=True)
    reply_id: int = Field(foreign_key="replies.id", index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    change_made: str | None = Field(default=None, sa_column=Column(Text))
    user_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = tz_field(now=True)


class ScreeningFlag(SQLModel, table=True):
    """Abusive language found in a published text, waiting for the regulator's review.

    A flag never hides anything: the regulator keeps the text or opens a takedown."""

    __tablename__ = "screening_flags"
    id: int | None = Field(default=None, primary_key=True)
    rating_id: str = Field(foreign_key="ratings.id", index=True, max_length=32)
    reply_id: int | None = Field(default=None, foreign_key="replies.id")
    terms: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of the hits
    text: str = Field(sa_column=Column(Text, nullable=False))  # what was screened, as written
    flagged_at: datetime = tz_field(now=True)
    reviewed_at: datetime | None = tz_field(nullable=True)
    reviewed_by: int | None = Field(default=None, foreign_key="users.id")
    outcome: str | None = Field(default=None, max_length=10)  # kept | takedown


class TakedownRequest(SQLModel, table=True):
    """Fixed once made (a trigger refuses changes); `status` follows its decision."""

    __tablename__ = "takedown_requests"
    __table_args__ = (
        Index(  # one pending request per text, also under concurrency
            "uq_takedown_pending",
            "rating_id",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    rating_id: str = Field(foreign_key="ratings.id", index=True, max_length=32)
    insurer_id: int = Field(foreign_key="insurers.id", index=True)
    reason: str = Field(max_length=20)  # personal_data|abuse|defamation|spam|unrelated
    explanation: str = Field(sa_column=Column(Text, nullable=False))
    requested_by: int = Field(foreign_key="users.id")
    requested_at: datetime = tz_field(now=True)
    source: str = Field(  # insurer | screening (opened by the regulator from a flag)
        default="insurer", max_length=10, sa_column_kwargs={"server_default": "insurer"}
    )
    status: str = Field(
        default="pending", max_length=10, sa_column_kwargs={"server_default": "pending"}
    )


class TakedownDecision(SQLModel, table=True):
    __tablename__ = "takedown_decisions"
    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="takedown_requests.id", unique=True)
    decision: str = Field(max_length=10)  # approved | rejected
    note: str = Field(sa_column=Column(Text, nullable=False))
    decided_by: int = Field(foreign_key="users.id")
    decided_at: datetime = tz_field(now=True)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = tz_field(now=True)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    subject: str = Field(max_length=64)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))


class Device(SQLModel, table=True):
    __tablename__ = "devices"
    id: int | None = Field(default=None, primary_key=True)
    insurer_id: int = Field(foreign_key="insurers.id", index=True)
    branch_id: int = Field(foreign_key="branches.id")
    token_hash: str = Field(max_length=64, unique=True)
    label: str | None = Field(default=None, max_length=50)  # e.g. "3号窗口"
    created_at: datetime = tz_field(now=True)
    last_seen_at: datetime | None = tz_field(nullable=True)
    revoked_at: datetime | None = tz_field(nullable=True)


class ApiClient(SQLModel, table=True):
    __tablename__ = "api_clients"
    id: int | None = Field(default=None, primary_key=True)
    insurer_id: int = Field(foreign_key="insurers.id", index=True)
    client_id: str = Field(max_length=40, unique=True)
    secret: str = Field(max_length=128)  # HMAC needs the secret itself
    created_at: datetime = tz_field(now=True)
    revoked_at: datetime | None = tz_field(nullable=True)


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=200)
    role: str = Field(max_length=16)  # regulator | insurer | admin
    insurer_id: int | None = Field(default=None, foreign_key="insurers.id")
    active: bool = flag(True)
    created_at: datetime = tz_field(now=True)


class LoginSession(SQLModel, table=True):
    """Server-side login session: the cookie holds a token, the table its SHA-256."""

    __tablename__ = "login_sessions"
    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = tz_field(now=True)
    last_seen_at: datetime = tz_field(now=True)
    ended_at: datetime | None = tz_field(nullable=True)


class LoginAttempt(SQLModel, table=True):
    __tablename__ = "login_attempts"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = tz_field(now=True, index=True)
    username: str = Field(max_length=64, index=True)
    ip: str = Field(max_length=64, index=True)
    success: bool


class LedgerEntry(SQLModel, table=True):
    """Sequenced leaves: leaf_index is gap-free, assigned only by the checkpointer."""

    __tablename__ = "ledger_entries"
    leaf_index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    rating_id: str = Field(foreign_key="ratings.id", unique=True, max_length=32)
    leaf_hash: str = Field(max_length=64)
    sequenced_at: datetime = tz_field(now=True)


class LedgerQueue(SQLModel, table=True):
    """Every rating, queued for the checkpointer in the rating's own transaction.

    The checkpointer reads the open rows (a partial index keeps that O(pending), not
    O(all ratings)) and stamps `sequenced_at` when it appends them to the ledger; only
    that column may change (migration 0010's trigger). The app may not delete rows;
    `portal verify` names a rating that is neither sequenced nor open here (someone
    stamped it without sequencing it), and one queued with another hash than its own."""

    __tablename__ = "ledger_queue"
    __table_args__ = (
        Index(
            "ix_ledger_queue_open",
            "recorded_at",
            "rating_id",
            sqlite_where=text("sequenced_at IS NULL"),
            postgresql_where=text("sequenced_at IS NULL"),
        ),
    )
    rating_id: str = Field(primary_key=True, foreign_key="ratings.id", max_length=32)
    recorded_at: datetime = tz_field()  # the rating's: leaves go in (recorded_at, id) order
    sequenced_at: datetime | None = tz_field(nullable=True)
    # The rating's leaf hash, so sequencing needs no join to `ratings`. Frozen by a
    # trigger (as are rating_id and recorded_at); None only for a row written by an app
    # older than migration 0010, and the checkpointer then reads the rating's hash.
    leaf_hash: str | None = Field(default=None, max_length=64)


class Checkpoint(SQLModel, table=True):
    __tablename__ = "checkpoints"
    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: str = Field(max_length=64)
    timestamp: datetime = tz_field()
    note: str = Field(sa_column=Column(Text, nullable=False))
    signature: str = Field(max_length=200)  # base64 Ed25519 over `note`
    key_id: str = Field(max_length=16)
    frontier: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of hex subtree roots


class Outbox(SQLModel, table=True):
    """Work to do after commit (search indexing), written in the rating's transaction."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=32)
    ref: str = Field(max_length=64)
    created_at: datetime = tz_field(now=True)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    done_at: datetime | None = tz_field(nullable=True, index=True)


class RollupDaily(SQLModel, table=True):
    """Per day (China time) x insurer x branch x stage x channel x verified. branch 0 = none."""

    __tablename__ = "rollup_daily"
    # Insurer pages read one insurer's days; the primary key starts with `day`.
    __table_args__ = (Index("ix_rollup_daily_insurer_day", "insurer_id", "day"),)
    day: date = Field(primary_key=True)
    insurer_id: int = Field(primary_key=True)
    branch_id: int = Field(primary_key=True)
    stage: str = Field(primary_key=True, max_length=10)
    channel: str = Field(primary_key=True, max_length=10)
    verified: bool = Field(primary_key=True)
    n: int = 0
    sum_score: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    sum_sq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    top: int = 0
    bottom: int = 0


class RollupStaffDaily(SQLModel, table=True):
    """Per day x staff x stage x channel, for star levels."""

    __tablename__ = "rollup_staff_daily"
    # Star levels read one teller's last 90 days; the primary key starts with `day`.
    __table_args__ = (Index("ix_rollup_staff_lookup", "staff_id", "channel", "day"),)
    day: date = Field(primary_key=True)
    staff_id: int = Field(primary_key=True)
    stage: str = Field(primary_key=True, max_length=10)
    channel: str = Field(primary_key=True, max_length=10)
    n: int = 0
    sum_score: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    sum_sq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    top: int = 0
    bottom: int = 0


class RollupMonthly(SQLModel, table=True):
    """rollup_daily summed per calendar month (China time; `month` is its first day).

    At national spread rollup_daily holds nearly a row per rating, so a quarter read
    from it is a sizeable share of the ratings; a month sums ~30 days into one row.
    Kept in the same transaction as rollup_daily; read for whole-month periods."""

    __tablename__ = "rollup_monthly"
    # Province and city views read a few dozen branches' months: from this index alone
    # (it holds every column), without a lookup into the table per row.
    __table_args__ = (
        Index(
            "ix_rollup_monthly_branch_month",
            *("branch_id", "month", "stage", "verified", "channel", "insurer_id"),
            *("n", "sum_score", "sum_sq", "top", "bottom"),
        ),
    )
    month: date = Field(primary_key=True)
    insurer_id: int = Field(primary_key=True)
    branch_id: int = Field(primary_key=True)
    stage: str = Field(primary_key=True, max_length=10)
    channel: str = Field(primary_key=True, max_length=10)
    verified: bool = Field(primary_key=True)
    n: int = 0
    sum_score: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    sum_sq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    top: int = 0
    bottom: int = 0


class RollupStaffMonthly(SQLModel, table=True):
    """rollup_staff_daily summed per calendar month, for staff rankings of whole months."""

    __tablename__ = "rollup_staff_monthly"
    __table_args__ = (Index("ix_rollup_staff_monthly_staff", "staff_id", "month"),)
    month: date = Field(primary_key=True)
    staff_id: int = Field(primary_key=True)
    stage: str = Field(primary_key=True, max_length=10)
    channel: str = Field(primary_key=True, max_length=10)
    n: int = 0
    sum_score: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    sum_sq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    top: int = 0
    bottom: int = 0


class CounterSession(SQLModel, table=True):
    """A service session at a counter: opened by the teller, rated at most once."""

    __tablename__ = "counter_sessions"
    __table_args__ = (
        UniqueConstraint("device_id", "idempotency_key"),
        Index("ix_counter_sessions_device_pressed", "device_id", "pressed_at"),
    )
    id: str = Field(primary_key=True, max_length=32)
    device_id: int = Field(foreign_key="devices.id")
    insurer_id: int = Field(foreign_key="insurers.id", index=True)
    branch_id: int = Field(foreign_key="branches.id")
    staff_id: int = Field(foreign_key="staff.id", index=True)
    stage: str = Field(max_length=10)
    ticket: str | None = Field(default=None, max_length=16)
    idempotency_key: str = Field(max_length=128)
    fingerprint: str = Field(max_length=64)
    opened_at: datetime = tz_field(now=True)
    expires_at: datetime = tz_field()
    rating_id: str | None = Field(
        default=None, foreign_key="ratings.id", unique=True, max_length=32
    )
    rated_at: datetime | None = tz_field(nullable=True)  # when the rating arrived
    pressed_at: datetime | None = tz_field(nullable=True)  # when the customer pressed


class CounterFlag(SQLModel, table=True):
    """A misuse signal (never a reason to drop a rating): shown to insurer and regulator."""

    __tablename__ = "counter_flags"
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)  # fast_rating | burst
    insurer_id: int = Field(foreign_key="insurers.id", index=True)
    branch_id: int = Field(foreign_key="branches.id")
    staff_id: int | None = Field(default=None, foreign_key="staff.id")
    device_id: int | None = Field(default=None, foreign_key="devices.id")
    session_id: str | None = Field(default=None, max_length=32)
    rating_id: str | None = Field(default=None, max_length=32)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    created_at: datetime = tz_field(now=True, index=True)


class RollupCounterDaily(SQLModel, table=True):
    """Sessions opened and rated per day (China time of opening) x staff x branch."""

    __tablename__ = "rollup_counter_daily"
    day: date = Field(primary_key=True)
    staff_id: int = Field(primary_key=True)
    branch_id: int = Field(primary_key=True)  # a teller may serve at two branches in a day
    insurer_id: int = Field(index=True)
    opened: int = 0
    rated: int = 0


class Policy(SQLModel, table=True):
    """A policy an insurer registered, with the customer's phone only as a keyed hash."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("insurer_id", "policy_no"),)
    id: int | None = Field(default=None, primary_key=True)
    insurer_id: int = Field(foreign_key="insurers.id")
    policy_no: str = Field(max_length=40)
    phone_hash: str = Field(max_length=64, index=True)  # HMAC-SHA256(key, E.164 number)
    created_at: datetime = tz_field(now=True)


class VerificationCode(SQLModel, table=True):
    """A one-time code sent to a policy's phone; only its hash is stored."""

    __tablename__ = "verification_codes"
    id: int | None = Field(default=None, primary_key=True)
    policy_id: int = Field(foreign_key="policies.id", index=True)
    phone_hash: str = Field(max_length=64, index=True)
    ip: str = Field(max_length=64, index=True)
    code_hash: str = Field(max_length=64)
    created_at: datetime = tz_field(now=True, index=True)
    expires_at: datetime = tz_field()
    used_at: datetime | None = tz_field(nullable=True)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class WebReview(SQLModel, table=True):
    """The web channel's side of a rating: which policy (if verified) and the receipt key."""

    __tablename__ = "web_reviews"
    __table_args__ = (Index("ix_web_reviews_policy_stage", "policy_id", "stage", "created_at"),)
    rating_id: str = Field(primary_key=True, foreign_key="ratings.id", max_length=32)
    policy_id: int | None = Field(default=None, foreign_key="policies.id")
    stage: str = Field(max_length=10)
    receipt_token_hash: str = Field(max_length=64)  # the reviewer's follow-up link
    created_at: datetime = tz_field(now=True)


class SmsMessage(SQLModel, table=True):
    """What the development SMS sender 'sent' (the dev inbox page shows it)."""

    __tablename__ = "sms_messages"
    id: int | None = Field(default=None, primary_key=True)
    phone_masked: str = Field(max_length=20)
    phone_hash: str = Field(max_length=64, index=True)
    body: str = Field(max_length=500)
    created_at: datetime = tz_field(now=True)


class PhoneCall(SQLModel, table=True):
    """Every ended call a call-centre system reports, rated or not: survey offer rates."""

    __tablename__ = "phone_calls"
    __table_args__ = (
        UniqueConstraint("client_id", "call_id"),
        Index("ix_phone_calls_insurer_ended", "insurer_id", "ended_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="api_clients.id")
    insurer_id: int = Field(foreign_key="insurers.id")
    staff_id: int = Field(foreign_key="staff.id", index=True)
    call_id: str = Field(max_length=128)  # the rating's idempotency key when it was rated
    source: str = Field(max_length=64)  # the client's ratings' source, to find the rating
    survey_offered: bool
    hung_up_before_survey: bool
    ended_at: datetime = tz_field()
    fingerprint: str = Field(max_length=64)
    recorded_at: datetime = tz_field(now=True)


class VisitTask(SQLModel, table=True):
    """A return visit (回访) to make: a new policy's sale or a closed claim, one per policy
    and kind. `cycle` grows when a corrected number reopens an unreachable task."""

    __tablename__ = "visit_tasks"
    __table_args__ = (
        UniqueConstraint("insurer_id", "kind", "policy_no"),
        Index("ix_visit_tasks_due", "insurer_id", "status", "due_from"),
    )
    id: int | None = Field(default=None, primary_key=True)
    insurer_id: int = Field(foreign_key="insurers.id")
    kind: str = Field(max_length=12)  # new_policy | claim
    policy_no: str = Field(max_length=40)
    phone: str = Field(max_length=20)  # E.164: the number the call centre dials
    phone_hash: str = Field(max_length=64, index=True)  # keyed, to compare with staff phones
    customer_hash: str = Field(max_length=64)  # keyed hash of the insurer's customer id
    staff_id: int = Field(foreign_key="staff.id", index=True)  # sales agent or adjuster
    event_date: date  # issue or closing date
    cycle: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    due_from: date
    due_until: date
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # this cycle
    last_attempt_on: date | None = None  # China-time day of the last attempt
    status: str = Field(
        default="open", max_length=12, sa_column_kwargs={"server_default": "open"}
    )  # open | reached | rated | refused | unreachable
    rating_id: str | None = Field(
        default=None, foreign_key="ratings.id", unique=True, max_length=32
    )
    created_at: datetime = tz_field(now=True)
    updated_at: datetime | None = tz_field(nullable=True)


class VisitAttempt(SQLModel, table=True):
    """One call attempt of a return visit, as the call centre reported it (never changed)."""

    __tablename__ = "visit_attempts"
    __table_args__ = (UniqueConstraint("task_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="visit_tasks.id")
    cycle: int
    outcome: str = Field(max_length=12)  # answered | no_answer | refused | wrong_number
    at: datetime = tz_field()
    source: str = Field(max_length=64)
    recorded_at: datetime = tz_field(now=True)


class PoliciesInForce(SQLModel, table=True):
    """Policies an insurer reports in force for a month: the denominator of the
    dissatisfied-per-10,000 and complaint-index figures. A new report replaces the old."""

    __tablename__ = "policies_in_force"
    insurer_id: int = Field(foreign_key="insurers.id", primary_key=True)
    month: date = Field(primary_key=True)  # first day of the month
    policies: int = Field(sa_column=Column(BigInteger, nullable=False))
    source: str = Field(max_length=64)  # cli | client:<id>
    reported_at: datetime = tz_field(now=True)


class RankingSnapshot(SQLModel, table=True):
    """A published ranking: the numbers frozen as computed, with the ledger checkpoint they
    were computed on (append-only: a correction is a new snapshot)."""

    __tablename__ = "ranking_snapshots"
    __table_args__ = (Index("ix_ranking_snapshots_scope_published", "scope", "published_at"),)
    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=10)  # public | industry | regulator
    period_kind: str = Field(max_length=8)
    period_start: date
    period_end: date
    region: str = Field(default="", max_length=6)  # "" = national
    stage: str = Field(default="", max_length=10)  # "" = all stages
    channel: str = Field(default="", max_length=10)  # "" = all channels
    tree_size: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    root_hash: str | None = Field(default=None, max_length=64)
    method: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    body: str = Field(sa_column=Column(Text, nullable=False))  # JSON: rows, medians
    published_by: int = Field(foreign_key="users.id")
    published_at: datetime = tz_field(now=True)


class InsurerPage(SQLModel, table=True):
    """What an insurer's public page is made of: database triggers (migration 0008) bump
    `version` in the same transaction as every write the page shows (a rating's rollup,
    a text, its takedown or redaction, a reply, a follow-up or an edit, a branch, the
    insurer itself) and keep `reviews`, the count of its written reviews (removed ones
    included). portal/page_cache.py keys the page's rendered HTML on `version`."""

    __tablename__ = "insurer_pages"
    insurer_id: int = Field(foreign_key="insurers.id", primary_key=True)
    # PostgreSQL spreads the counters over several rows per insurer, one per transaction
    # (migration 0008): the version and the count are the sums over an insurer's slots.
    slot: int = Field(default=0, primary_key=True, sa_column_kwargs={"server_default": text("0")})
    version: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0"))
    )
    reviews: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
