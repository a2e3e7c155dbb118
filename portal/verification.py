"""One-time codes that prove a web reviewer holds the phone registered with a policy.

Codes are 6 digits from `secrets`, stored only as a keyed hash, valid for 10 minutes,
used once, and dead after 5 tries. Requests are limited per phone and per IP inside
one write transaction that is serialised per phone and per IP, so parallel requests
cannot all slip under a limit, and a refused request stores nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text, update

from portal import directory, policies
from portal.canonical import utc
from portal.db import reading
from portal.errors import Invalid, PortalError, RateLimited
from portal.i18n import N_
from portal.models import VerificationCode
from portal.sms import Sender, mask_phone

log = logging.getLogger("portal.verification")
CODE_TTL = timedelta(minutes=10)
MAX_TRIES = 5
WINDOW = timedelta(hours=1)
MAX_PER_PHONE = 5
MAX_PER_IP = 20
LOCK_CLASS = 7262003  # advisory lock namespace (the ledger uses 7262002)
CODES: Any = VerificationCode.__table__
_CODE = re.compile(r"^[0-9]{6}$")


class SendFailed(PortalError):
    """The SMS gateway refused or failed: the code row stays and counts toward limits."""

    status, code = 503, "sms_failed"


@dataclass(frozen=True)
class Customer:
    """A policy number and phone that belong together (not yet proven by a code)."""

    policy_id: int
    phone_hash: str
    phone: str  # E.164, only ever in memory


@dataclass(frozen=True)
class CodeSent:
    phone_masked: str
    expires_at: datetime


def identify(conn: Connection, key: bytes, insurer: str, policy_no: str, phone: str) -> Customer:
    """The registered policy behind these fields, or Invalid (one message for both misses)."""
    e164 = policies.normalise_phone(phone)
    number = policies.normalise_policy_no(policy_no)
    digest = policies.phone_hash(key, e164)
    policy_id = policies.find(conn, directory.insurer_id(conn, insurer), number, digest)
    return Customer(policy_id, digest, e164)


def code_hash(key: bytes, policy_id: int, code: str) -> str:
    """Keyed, so a copy of the table does not give the codes away by trying all 10^6."""
    return hmac.new(key, f"code:{policy_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _lock(conn: Connection, *names: str) -> None:
    """PostgreSQL: serialise per phone and per IP (always in this order: no deadlock).
    SQLite: the transaction began IMMEDIATE, which already excludes other writers."""
    if conn.dialect.name != "postgresql":
        return
    for name in names:
        obj = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:c, :o)"), {"c": LOCK_CLASS, "o": obj})


def _check_limit(conn: Connection, column: Any, value: str, limit: int, now: datetime) -> None:
    first = conn.execute(
        select(func.min(VerificationCode.created_at), func.count()).where(
            column == value, VerificationCode.created_at > now - WINDOW
        )
    ).one()
    if first[1] < limit:
        return
    wait = max(60, int((utc(first[0]) + WINDOW - now).total_seconds()))
    params = {"retry_after": wait, "minutes": math.ceil(wait / 60), "code": "too_many_codes"}
    if column is VerificationCode.ip:
        raise RateLimited(
            "Too many codes were requested from your network. Try again in %(minutes)s minutes.",
            **params,
        )
    raise RateLimited(
        "Too many codes were requested for this mobile number. Try again in %(minutes)s minutes.",
        field="phone",
        **params,
    )


def _store(engine: Engine, customer: Customer, ip: str, digest: str) -> datetime:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _lock(conn, f"phone:{customer.phone_hash}", f"ip:{ip}")
        _check_limit(conn, VerificationCode.phone_hash, customer.phone_hash, MAX_PER_PHONE, now)
        _check_limit(conn, VerificationCode.ip, ip, MAX_PER_IP, now)
        conn.execute(
            CODES.insert().values(
                policy_id=customer.policy_id,
                phone_hash=customer.phone_hash,
                ip=ip,
                code_hash=digest,
                created_at=now,
                expires_at=now + CODE_TTL,
            )
        )
    return now + CODE_TTL


def request_code(
    engine: Engine,
    sender: Sender,
    key: bytes,
    customer: Customer,
    ip: str,
    compose: Callable[[str], str],
) -> CodeSent:
    """Store a fresh code (within the limits), then text it; `compose` words the message."""
    code = f"{secrets.randbelow(10**6):06d}"
    expires = _store(engine, customer, ip[:64], code_hash(key, customer.policy_id, code))
    try:
        sender.send(customer.phone, compose(code))
    except Exception as err:
        log.exception("sending a verification code to %s failed", mask_phone(customer.phone))
        raise SendFailed(N_("The code could not be sent. Please try again in a minute.")) from err
    return CodeSent(mask_phone(customer.phone), expires)


def check_format(code: str) -> str:
    """Six ASCII digits; full-width ones (a Chinese input method's) are folded first."""
    code = unicodedata.normalize("NFKC", code).strip()
    if not _CODE.match(code):
        raise Invalid(
            "Enter the 6-digit code from the text message.", field="code", code="invalid_code"
        )
    return code


def _latest(conn: Connection, customer: Customer, now: datetime) -> Any:
    """Only the newest code counts: asking for a new one retires the older ones."""
    row = conn.execute(
        select(VerificationCode)
        .where(
            VerificationCode.policy_id == customer.policy_id,
            VerificationCode.phone_hash == customer.phone_hash,
        )
        .order_by(VerificationCode.created_at.desc(), VerificationCode.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise Invalid(
            "Request a code first, with the “Send code” button.",
            field="code",
            code="no_code",
        )
    if row.used_at is not None:
        raise _used()
    if utc(row.expires_at) <= now:
        raise Invalid(
            "This code has expired. Request a new code.", field="code", code="code_expired"
        )
    return row


def _too_many() -> Invalid:
    return Invalid("Too many wrong codes. Request a new code.", field="code", code="too_many_tries")


def _used() -> Invalid:
    return Invalid(
        "This code has already been used. Request a new code.", field="code", code="code_used"
    )


def _reserve_try(engine: Engine, customer: Customer, now: datetime) -> tuple[Any, int]:
    """Count the try BEFORE comparing, committed, so parallel guesses cannot exceed 5."""
    with engine.begin() as conn:
        row = _latest(conn, customer, now)
        tries = conn.execute(
            update(VerificationCode)
            .where(
                VerificationCode.id == row.id,
                VerificationCode.attempts < MAX_TRIES,
                VerificationCode.used_at.is_(None),
            )
            .values(attempts=VerificationCode.attempts + 1)
            .returning(VerificationCode.attempts)
        ).scalar()
        # Refused: say why as it is now (a parallel request may have used the code).
        used = (
            tries is None
            and conn.execute(
                select(VerificationCode.used_at).where(VerificationCode.id == row.id)
            ).scalar()
        )
    if used:
        raise _used()
    if tries is None:
        raise _too_many()
    return row, int(tries)


def check_code(engine: Engine, key: bytes, customer: Customer, code: str) -> int:
    """The id of the customer's live code when `code` matches it; every try counts."""
    code = check_format(code)
    with reading(engine) as conn:  # a quick refusal for a missing/used/expired code
        _latest(conn, customer, datetime.now(UTC))
    row, tries = _reserve_try(engine, customer, datetime.now(UTC))
    if not hmac.compare_digest(row.code_hash, code_hash(key, customer.policy_id, code)):
        if tries >= MAX_TRIES:
            raise _too_many()
        raise Invalid(
            "The code is not correct. Tries left for this code: %(left)s.",
            field="code",
            code="wrong_code",
            left=MAX_TRIES - tries,
        )
    return int(row.id)


def consume(conn: Connection, code_id: int, now: datetime) -> None:
    """Mark the code used in the rating's transaction: one code, one rating, even in races."""
    done = conn.execute(
        update(VerificationCode)
        .where(
            VerificationCode.id == code_id,
            VerificationCode.used_at.is_(None),
            VerificationCode.expires_at > now,
        )
        .values(used_at=now)
    )
    if done.rowcount != 1:
        raise Invalid(
            "This code is no longer valid. Request a new code.", field="code", code="code_used"
        )
