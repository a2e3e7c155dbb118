"""Sending text messages (verification codes): a pluggable sender.

SMS_SENDER=dev (the default outside production) logs the message and keeps it in
`sms_messages` for the dev inbox page; a real gateway plugs in as
SMS_SENDER=package.module:Class, a class taking the Settings and offering send().
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import logging
from typing import Protocol

from sqlalchemy import Engine

from portal.config import Settings
from portal.models import SmsMessage

log = logging.getLogger("portal.sms")


class Sender(Protocol):
    def send(self, phone: str, body: str) -> None:
        """Deliver `body` to `phone` (E.164, e.g. +8613800001234) or raise."""


def mask_phone(phone: str) -> str:
    """+8613800001234 -> 138****1234: enough to recognise, not to call."""
    digits = phone.removeprefix("+86")
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 7 else "****"


class DevSender:
    """Development: the message goes to the log and the dev inbox, never to a phone."""

    def __init__(self, engine: Engine, phone_key: bytes) -> None:
        self.engine = engine
        self.phone_key = phone_key

    def send(self, phone: str, body: str) -> None:
        log.info("SMS to %s: %s", mask_phone(phone), body)
        digest = hmac.new(self.phone_key, phone.encode(), hashlib.sha256).hexdigest()
        with self.engine.begin() as conn:
            conn.execute(
                SmsMessage.__table__.insert().values(
                    phone_masked=mask_phone(phone), phone_hash=digest, body=body[:500]
                )
            )


def make_sender(settings: Settings, engine: Engine, phone_key: bytes) -> Sender:
    if settings.sms_sender == "dev":
        return DevSender(engine, phone_key)
    module, _, name = settings.sms_sender.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return cls(settings)  # type: ignore[no-any-return]
