"""Users, roles, passwords (argon2id), login sessions and login rate limits."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, func, select

from portal import audit, directory
from portal.canonical import utc
from portal.credentials import token_hash
from portal.db import reading
from portal.errors import Conflict, Invalid, RateLimited
from portal.models import USER_ROLES, LoginAttempt, LoginSession, User

HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
MIN_PASSWORD = 10
WINDOW = timedelta(minutes=15)
MAX_FAILS_PER_ACCOUNT = 5
MAX_FAILS_PER_IP = 20
# Verifying against this keeps the timing of unknown and known usernames alike.
_DUMMY = HASHER.hash("not a real password, only for timing")


@dataclass(frozen=True)
class Principal:
    """Who is making a request; `anonymous` for public visitors."""

    user_id: int | None
    username: str
    role: str  # anonymous | regulator | insurer | admin
    insurer_id: int | None = None
    csrf_token: str = ""

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Principal(None, "", "anonymous")


def clock() -> datetime:
    """Now, for the session lifecycle; tests substitute it to move time on."""
    return datetime.now(UTC)


def add_user(
    conn: Connection, username: str, password: str, role: str, insurer: str | None = None
) -> int:
    username = username.strip()
    if not username or len(username) > 64 or not username.isprintable() or " " in username:
        raise Invalid(
            "A user name of 1 to 64 characters without spaces is required.",
            field="username",
            code="invalid_username",
        )
    if role not in USER_ROLES:
        raise Invalid(
            "Role must be regulator, insurer or admin.", field="role", code="invalid_role"
        )
    if (role == "insurer") != (insurer is not None):
        raise Invalid(
            "An insurer user needs --insurer; other roles must not have one.",
            field="insurer",
            code="insurer_mismatch",
        )
    if len(password) < MIN_PASSWORD:
        raise Invalid(
            "The password must have at least %(min)s characters.",
            field="password",
            code="weak_password",
            min=MIN_PASSWORD,
        )
    if conn.execute(select(User.id).where(User.username == username)).first():
        raise Conflict(
            "User %(value)s already exists.", field="username", code="exists", value=username
        )
    iid = directory.insurer_id(conn, insurer) if insurer else None
    result = conn.execute(
        User.__table__.insert().values(
            username=username, password_hash=HASHER.hash(password), role=role, insurer_id=iid
        )
    )
    return int(result.inserted_primary_key[0])


def _recent_failures(conn: Connection, now: datetime, **where: str) -> int:
    ((col, value),) = where.items()
    stmt = (
        select(func.count())
        .select_from(LoginAttempt)
        .where(
            getattr(LoginAttempt, col) == value,
            LoginAttempt.success.is_(False),
            LoginAttempt.at > now - WINDOW,
        )
    )
    return int(conn.execute(stmt).scalar_one())


def authenticate(engine: Engine, username: str, password: str, ip: str) -> User | None:
    """Check a password, rate-limited per account and per IP; None when it is wrong.

    The attempt is written (as a failure) and committed BEFORE counting, so parallel
    guesses see each other and cannot all slip under the limit. The slow argon2 check
    runs outside any transaction: on SQLite it must not hold the write lock.
    """
    now = datetime.now(UTC)
    username = username.strip()[:64]
    with engine.begin() as conn:
        attempt = conn.execute(
            LoginAttempt.__table__.insert().values(
                at=now, username=username, ip=ip[:64], success=False
            )
        ).inserted_primary_key[0]
    with reading(engine) as conn:
        limited = (
            _recent_failures(conn, now, username=username) > MAX_FAILS_PER_ACCOUNT
            or _recent_failures(conn, now, ip=ip) > MAX_FAILS_PER_IP
        )
        user = (
            None
            if limited
            else conn.execute(select(User).where(User.username == username, User.active)).first()
        )
    if limited:
        raise RateLimited(
            "Too many failed logins. Try again in 15 minutes.",
            retry_after=int(WINDOW.total_seconds()),
            code="too_many_attempts",
        )
    ok = _password_ok(user.password_hash if user else None, password) and user is not None
    with engine.begin() as conn:
        if ok:
            conn.execute(
                LoginAttempt.__table__.update()
                .where(LoginAttempt.id == attempt)
                .values(success=True)
            )
        audit.log(conn, f"ip:{ip}", "login" if ok else "login.failed", username)
    return user if ok else None


def _password_ok(stored: str | None, password: str) -> bool:
    """Verify in constant-ish time: unknown users are checked against a dummy hash."""
    try:
        return bool(HASHER.verify(stored or _DUMMY, password))
    except (VerificationError, InvalidHashError):
        return False


def start_session(conn: Connection, user_id: int, replacing: str = "") -> str:
    """A fresh opaque token for every login (no session fixation). The session the browser
    had (`replacing`, its old cookie) ends: the new cookie overwrites it, and a copy of
    it elsewhere must not stay logged in."""
    if replacing:
        end_session(conn, replacing)
    token, now = secrets.token_urlsafe(32), clock()
    conn.execute(
        LoginSession.__table__.insert().values(
            token_hash=token_hash(token),
            user_id=user_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
        )
    )
    return token


def load_session(
    engine: Engine,
    token: str,
    idle: timedelta,
    absolute: timedelta,
) -> Principal | None:
    """The principal behind a cookie token, or None if unknown, ended or timed out.

    A plain read; it writes only to end a timed-out session (or one of a deactivated
    user) or, at most once a minute, to note activity (so page views do not queue
    behind SQLite's write lock).
    """
    now = clock()
    with reading(engine) as conn:
        row = conn.execute(
            select(
                LoginSession.token_hash,
                LoginSession.csrf_token,
                LoginSession.created_at,
                LoginSession.last_seen_at,
                User.id,
                User.username,
                User.role,
                User.insurer_id,
                User.active,
            )
            .join(User, User.id == LoginSession.user_id)
            .where(LoginSession.token_hash == token_hash(token), LoginSession.ended_at.is_(None))
        ).first()
    if row is None:
        return None
    expired = now - utc(row.last_seen_at) > idle or now - utc(row.created_at) > absolute
    if expired or not row.active:  # a deactivated user's sessions end (reactivating won't revive)
        with engine.begin() as conn:
            end_session(conn, token)
        return None
    if now - utc(row.last_seen_at) > timedelta(minutes=1):
        with engine.begin() as conn:
            conn.execute(
                LoginSession.__table__.update()
                .where(LoginSession.token_hash == row.token_hash)
                .values(last_seen_at=now)
            )
    return Principal(row.id, row.username, row.role, row.insurer_id, row.csrf_token)


def end_session(conn: Connection, token: str) -> None:
    conn.execute(
        LoginSession.__table__.update()
        .where(LoginSession.token_hash == token_hash(token))
        .values(ended_at=clock())
    )


def end_all_sessions(conn: Connection, user_id: int) -> int:
    """What an admin does to throw a user out everywhere."""
    result = conn.execute(
        LoginSession.__table__.update()
        .where(LoginSession.user_id == user_id, LoginSession.ended_at.is_(None))
        .values(ended_at=clock())
    )
    return int(result.rowcount)
