"""Policies that insurers register, so that web reviewers can prove they are customers.

The customer's mobile number is stored only as HMAC-SHA256(phone key, E.164 number):
a leaked table does not give the numbers away (the key lives outside the database),
and "138 0013 8000", "+86 13800138000" and "13800138000" all hash alike.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from sqlalchemy import Connection, select

from portal import directory
from portal.csvfiles import Records
from portal.errors import Invalid, PortalError
from portal.i18n import N_
from portal.models import Policy

COLUMNS = ("insurer", "policy_no", "phone")
REGION = "CN"  # numbers without a country code are Chinese
MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
_POLICY_NO = re.compile(r"^[A-Z0-9][A-Z0-9/_-]{0,39}$")
POLICIES: Any = Policy.__table__
# The same answer for an unknown policy and a wrong phone: do not tell which it was.
NO_MATCH = N_(
    "We found no policy with this number and mobile number. Check both, or leave them "
    "empty to post an unverified review."
)


def normalise_phone(raw: str) -> str:
    """A mobile number as people write it (spaces, dashes, +86 or not) -> E.164."""
    text = raw.strip()
    try:
        number = phonenumbers.parse(text, REGION) if len(text) <= 32 else None
    except NumberParseException:
        number = None
    if (
        number is None
        or not phonenumbers.is_valid_number(number)
        or phonenumbers.number_type(number) not in MOBILE  # the code goes out by SMS
    ):
        raise Invalid(
            "Enter a valid mobile number, e.g. 138 0013 8000.",
            field="phone",
            code="invalid_phone",
        )
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def phone_hash(key: bytes, e164: str) -> str:
    return hmac.new(key, e164.encode(), hashlib.sha256).hexdigest()


def normalise_policy_no(raw: str) -> str:
    """Customers type policy numbers with spaces, in lower case or full width; insurers
    do not."""
    value = "".join(unicodedata.normalize("NFKC", raw).split()).upper()
    if not _POLICY_NO.match(value):
        raise Invalid(
            "Enter the policy number as printed on your policy (letters and digits, at most 40).",
            field="policy_no",
            code="invalid_policy_no",
        )
    return value


def find(conn: Connection, insurer_id: int, policy_no: str, digest: str) -> int:
    """The policy's id when this number and phone hash belong together."""
    row = conn.execute(
        select(Policy.id, Policy.phone_hash).where(
            Policy.insurer_id == insurer_id, Policy.policy_no == policy_no
        )
    ).first()
    # Compare even when there is no row, so both failures take the same time.
    stored = row.phone_hash if row else "0" * 64
    if not hmac.compare_digest(stored, digest) or row is None:
        raise Invalid(NO_MATCH, field="policy_no", code="policy_not_found")
    return int(row.id)


def register(conn: Connection, insurer_id: int, policy_no: str, digest: str) -> str:
    """Insert a policy, or re-point it to a new phone. Returns added|updated|unchanged."""
    row = conn.execute(
        select(Policy.id, Policy.phone_hash).where(
            Policy.insurer_id == insurer_id, Policy.policy_no == policy_no
        )
    ).first()
    if row is None:
        conn.execute(
            POLICIES.insert().values(insurer_id=insurer_id, policy_no=policy_no, phone_hash=digest)
        )
        return "added"
    if row.phone_hash == digest:
        return "unchanged"
    conn.execute(POLICIES.update().where(Policy.id == row.id).values(phone_hash=digest))
    return "updated"


@dataclass(frozen=True)
class RowError:
    line: int
    error: PortalError

    def as_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "field": self.error.field,
            "code": self.error.code,
            "message": str(self.error),
        }

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}"


@dataclass
class ImportReport:
    """Good rows are imported; each bad row is listed with its line and reason."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "errors": [e.as_json() for e in self.errors],
        }


def _row(conn: Connection, rec: dict[str, str], key: bytes) -> tuple[int, str, str]:
    """(insurer id, policy number, phone hash) of one CSV record, or Invalid."""
    insurer = rec["insurer"].strip().upper()
    if "\x00" in insurer:  # PostgreSQL refuses NUL in a query parameter
        insurer = insurer.replace("\x00", "\\0")
    iid = directory.insurer_id(conn, insurer)
    policy_no = normalise_policy_no(rec["policy_no"])
    return iid, policy_no, phone_hash(key, normalise_phone(rec["phone"]))


def import_csv(conn: Connection, data: str, key: bytes) -> ImportReport:
    """Import `insurer,policy_no,phone` rows in the caller's transaction."""
    records, report = Records(data, COLUMNS), ImportReport()
    seen: dict[tuple[int, str], int] = {}
    for line, rec in records:  # the line each record starts on
        try:
            if isinstance(rec, Invalid):  # an open quote, a field over 128 KiB
                raise rec
            iid, policy_no, digest = _row(conn, records.fields(line, rec), key)
            if (iid, policy_no) in seen:
                raise Invalid(
                    "The same policy is already on line %(line)s.",
                    field="policy_no",
                    code="duplicate",
                    line=seen[(iid, policy_no)],
                )
        except PortalError as err:
            report.errors.append(RowError(line, err))
            continue
        seen[(iid, policy_no)] = line
        outcome = register(conn, iid, policy_no, digest)
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report
