"""Channel credentials: counter devices (bearer tokens) and call-centre API clients."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select

from portal import directory
from portal.errors import NotFound, Unauthorized
from portal.models import ApiClient, Device
from portal.prepared import Prepared


def token_hash(token: str) -> str:
    """How every random token is stored (device tokens, login sessions, receipts).

    Tokens are 192+ random bits: a fast hash is enough, no password hashing needed.
    surrogatepass: a hand-edited URL may carry anything; it must hash, not crash.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def add_device(
    conn: Connection,
    insurer: str,
    branch: str,
    label: str | None = None,
) -> tuple[int, str]:
    """Register a device for one branch. Returns (device_id, token); the token is shown once."""
    iid = directory.insurer_id(conn, insurer)
    bid = directory.branch_id(conn, iid, branch)
    token = "gpd_" + secrets.token_urlsafe(32)
    result = conn.execute(
        Device.__table__.insert().values(
            insurer_id=iid, branch_id=bid, token_hash=token_hash(token), label=label
        )
    )
    return int(result.inserted_primary_key[0]), token


# On the rating endpoints' path: run on the driver (portal/prepared.py).
_DEVICE = Prepared(
    select(Device).where(Device.token_hash == bindparam("hash"), Device.revoked_at.is_(None))
)


def device_for_token(conn: Connection, token: str) -> Any:
    """The device row (id, insurer_id, branch_id, ...) for a bearer token."""
    row = _DEVICE.first(conn, {"hash": token_hash(token)})
    if row is None:
        raise Unauthorized("Unknown or revoked device token.", code="bad_token")
    return row


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def add_client(conn: Connection, insurer: str) -> tuple[str, str]:
    """Register a call-centre system. Returns (client_id, secret); the secret is shown once."""
    iid = directory.insurer_id(conn, insurer)
    client_id = "gpc_" + secrets.token_hex(8)
    secret = _new_secret()
    conn.execute(
        ApiClient.__table__.insert().values(insurer_id=iid, client_id=client_id, secret=secret)
    )
    return client_id, secret


def _active_client(conn: Connection, client_id: str, insurer_id: int | None) -> Any:
    """An active client, of this insurer when one is given (an insurer user's own)."""
    stmt = select(ApiClient).where(
        ApiClient.client_id == client_id[:40], ApiClient.revoked_at.is_(None)
    )
    if insurer_id is not None:
        stmt = stmt.where(ApiClient.insurer_id == insurer_id)
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(
            "There is no active API client %(id)s.", field="client_id", id=client_id[:40]
        )
    return row


def rotate_client(conn: Connection, client_id: str, insurer_id: int | None = None) -> str:
    """A new secret for a client; the old one stops working at once. Shown once."""
    row = _active_client(conn, client_id, insurer_id)
    secret = _new_secret()
    conn.execute(ApiClient.__table__.update().where(ApiClient.id == row.id).values(secret=secret))
    return secret


def revoke_client(conn: Connection, client_id: str, insurer_id: int | None = None) -> None:
    """The client's requests are refused from now on (401); its ratings stay."""
    row = _active_client(conn, client_id, insurer_id)
    conn.execute(
        ApiClient.__table__.update().where(ApiClient.id == row.id).values(revoked_at=now())
    )


def clients(conn: Connection, insurer_id: int) -> list[Any]:
    """An insurer's clients, active first (never the secrets)."""
    return list(
        conn.execute(
            select(ApiClient.client_id, ApiClient.created_at, ApiClient.revoked_at)
            .where(ApiClient.insurer_id == insurer_id)
            .order_by(ApiClient.revoked_at.is_not(None), ApiClient.created_at.desc())
        )
    )


MAX_SKEW = 300  # seconds between the X-Timestamp and our clock (channel-api.md)
_DUMMY_SECRET = secrets.token_urlsafe(32)


_CLIENT = Prepared(
    select(ApiClient).where(
        ApiClient.client_id == bindparam("client_id"), ApiClient.revoked_at.is_(None)
    )
)


def authenticate_client(
    conn: Connection,
    client_id: str,
    timestamp: str,
    signature: str,
    body: bytes,
    now: datetime | None = None,
) -> Any:
    """The API client that signed this exact body at this time (401 otherwise).

    The signature covers the timestamp, so a captured body cannot be re-sent with a
    fresh timestamp, and an old one is refused by the window.
    """
    row = _CLIENT.first(conn, {"client_id": client_id[:40]})
    # Check a signature even for an unknown client, so both cost the same time.
    ok = check_signature(row.secret if row else _DUMMY_SECRET, timestamp, body, signature)
    if row is None or not ok:
        raise Unauthorized("Unknown client or bad signature.", code="bad_signature")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise Unauthorized("X-Timestamp must be unix seconds.", code="bad_timestamp")
    now = now or datetime.now(UTC)
    if abs(now.timestamp() - int(timestamp)) > MAX_SKEW:
        raise Unauthorized(
            "The request is too old or too far in the future (X-Timestamp).", code="stale_timestamp"
        )
    return row


def check_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """HMAC-SHA256(secret, timestamp + "." + body), compared in constant time.

    Compared as bytes: hmac.compare_digest raises TypeError on a non-ASCII str, and a
    header may carry anything (Starlette decodes headers as latin-1)."""
    stamp = timestamp.encode("utf-8", "surrogatepass")
    expected = hmac.new(secret.encode(), stamp + b"." + body, hashlib.sha256)
    given = signature.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(b"sha256=" + expected.hexdigest().encode(), given)


def now() -> datetime:
    return datetime.now(UTC)
