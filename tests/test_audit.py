"""Audit events are written with the act they record, and can never be rewritten."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from portal import accounts, audit
from portal.models import AuditEvent


def test_logins_are_audited(engine: Engine, users) -> None:  # noqa: ANN001
    assert accounts.authenticate(engine, "reg", "wrong password!", "10.9.9.9") is None
    with engine.connect() as conn:
        row = conn.execute(
            select(AuditEvent)
            .where(AuditEvent.actor == "ip:10.9.9.9")
            .order_by(AuditEvent.id.desc())
        ).first()
    assert (row.action, row.subject) == ("login.failed", "reg")


def test_audit_events_are_append_only(engine: Engine) -> None:
    with engine.begin() as conn:
        audit.log(conn, "test", "probe", "x", n=1)
    with engine.connect() as conn:
        event_id, detail = conn.execute(
            select(AuditEvent.id, AuditEvent.detail).order_by(AuditEvent.id.desc())
        ).first()
    assert json.loads(detail) == {"n": 1}
    for sql in (
        "UPDATE audit_events SET action = 'nothing' WHERE id = :id",
        "DELETE FROM audit_events WHERE id = :id",
    ):
        with engine.begin() as conn, pytest.raises(DBAPIError):
            conn.execute(text(sql), {"id": event_id})
