"""Audit events: an append-only record of who did what (logins, registrations, ...)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from portal.models import AuditEvent


def log(conn: Connection, actor: str, action: str, subject: str, **detail: Any) -> None:
    """Write one event in the caller's transaction, so it exists exactly when the act does."""
    conn.execute(
        AuditEvent.__table__.insert().values(
            at=datetime.now(UTC),
            actor=actor[:64],
            action=action[:64],
            subject=subject[:64],
            detail=json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True),
        )
    )
