"""Insurers, branches and staff: the subjects ratings are about."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from portal.csvfiles import Records
from portal.errors import Conflict, Invalid
from portal.models import ROLES, Branch, Insurer, Staff
from portal.regions import check_region

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
STAFF_COLUMNS = ("insurer", "branch", "staff_no", "name", "role")
# Optional last column: the staff member's own mobile, kept only as a keyed hash, so a
# return visit "to the customer" that would ring the agent is flagged.
STAFF_COLUMNS_WITH_PHONE = (*STAFF_COLUMNS, "phone")


def _code(value: str, field: str, max_len: int = 32) -> str:
    value = value.strip()
    if not _CODE.match(value) or len(value) > max_len:
        raise Invalid(
            "“%(value)s” is not a valid code: use letters, digits, - or _.",
            field=field,
            code="invalid_code",
            value=value[:40],
        )
    return value


def _name(value: str, field: str = "name", max_len: int = 100) -> str:
    value = " ".join(value.split())
    if not value or len(value) > max_len or not value.isprintable():
        raise Invalid(
            "A name of 1 to %(max)s printable characters is required.",
            field=field,
            code="invalid_name",
            max=max_len,
        )
    return value


def insurer_id(conn: Connection, code: str) -> int:
    row = conn.execute(select(Insurer.id).where(Insurer.code == code)).first()
    if row is None:
        raise Invalid(
            "Unknown insurer “%(value)s”.", field="insurer", code="unknown_insurer", value=code[:40]
        )
    return int(row.id)


def branch_id(conn: Connection, insurer: int, code: str) -> int:
    row = conn.execute(
        select(Branch.id).where(Branch.insurer_id == insurer, Branch.code == code)
    ).first()
    if row is None:
        raise Invalid(
            "This insurer has no branch “%(value)s”.",
            field="branch",
            code="unknown_branch",
            value=code[:40],
        )
    return int(row.id)


def add_insurer(conn: Connection, code: str, name: str, policy_format: str | None = None) -> int:
    code = _code(code, "code", 16).upper()
    fmt = check_policy_format(policy_format) if policy_format else None
    if conn.execute(select(Insurer.id).where(Insurer.code == code)).first():
        raise Conflict("Insurer %(value)s already exists.", field="code", code="exists", value=code)
    result = conn.execute(
        Insurer.__table__.insert().values(code=code, name=_name(name), policy_format=fmt)
    )
    return int(result.inserted_primary_key[0])


POLICY_FORMAT_MAX = 200
_PROBES = ("", "0", "1234", "您好，谢谢", "2026年11月22日", "13800138000")


def check_policy_format(raw: str) -> str:
    """An insurer's policy-number format: a regular expression that matches policy
    numbers (masked wherever texts are published) and nothing ordinary."""
    value = raw.strip()
    field = {"field": "policy_format", "code": "bad_policy_format"}
    if len(value) > POLICY_FORMAT_MAX:
        raise Invalid(
            "The policy-number format is longer than %(max)s characters.",
            max=POLICY_FORMAT_MAX,
            **field,
        )
    try:
        pattern = re.compile(value)
    except re.error as err:
        raise Invalid(
            "The policy-number format is not a valid regular expression: %(error)s.",
            error=str(err),
            **field,
        ) from None
    if any(pattern.fullmatch(probe) for probe in _PROBES):
        raise Invalid(
            "The policy-number format matches ordinary text (an empty string, a short "
            "number, a date); make it more specific.",
            **field,
        )
    return value


def set_policy_format(conn: Connection, insurer: str, policy_format: str | None) -> None:
    iid = insurer_id(conn, insurer)
    fmt = check_policy_format(policy_format) if policy_format else None
    conn.execute(update(Insurer).where(Insurer.id == iid).values(policy_format=fmt))


def policy_patterns(fmt: str | None) -> tuple[str, ...]:
    """The masking patterns for an insurer (none when it has no format)."""
    return (fmt,) if fmt else ()


def add_branch(conn: Connection, insurer: str, code: str, name: str, region: str) -> int:
    iid = insurer_id(conn, insurer)
    code = _code(code, "branch")
    if conn.execute(select(Branch.id).where(Branch.insurer_id == iid, Branch.code == code)).first():
        raise Conflict(
            "Branch %(value)s already exists.", field="branch", code="exists", value=code
        )
    result = conn.execute(
        Branch.__table__.insert().values(
            insurer_id=iid, code=code, name=_name(name), region=check_region(region)
        )
    )
    return int(result.inserted_primary_key[0])


@dataclass(frozen=True)
class StaffRow:
    insurer: str
    branch: str
    staff_no: str
    name: str
    role: str
    phone: str | None = None
    line: int | None = None  # in the CSV file it came from


def parse_staff_csv(data: str) -> list[StaffRow]:
    """Parse `insurer,branch,staff_no,name,role[,phone]` (header required). Raises Invalid
    naming the line (all or nothing)."""
    records = Records(data, STAFF_COLUMNS, STAFF_COLUMNS_WITH_PHONE)
    rows = []
    for line, rec in records:
        if isinstance(rec, Invalid):  # an open quote, a field over 128 KiB
            raise rec
        fields = records.fields(line, rec)
        role = fields["role"].strip()
        if role not in ROLES:
            raise Invalid(
                "Line %(line)s: role must be one of %(roles)s.",
                field="role",
                code="invalid_role",
                line=line,
                roles=", ".join(ROLES),
            )
        rows.append(
            StaffRow(
                fields["insurer"].strip().upper(),
                fields["branch"].strip(),
                fields["staff_no"].strip(),
                fields["name"].strip(),
                role,
                (fields.get("phone") or "").strip() or None,
                line,
            )
        )
    return rows


def import_staff(
    conn: Connection, rows: Iterable[StaffRow], phone_key: bytes | None = None
) -> tuple[int, int]:
    """Insert new staff and update names/roles/branches (and phones, when given) of known
    ones. (added, updated)."""
    added = updated = 0
    for n, row in enumerate(rows, start=2):
        line = row.line or n
        try:
            iid = insurer_id(conn, row.insurer)
            bid = branch_id(conn, iid, row.branch) if row.branch else None
            values = dict(
                staff_no=_code(row.staff_no, "staff_no"),
                name=_name(row.name, max_len=50),
                role=row.role,
                branch_id=bid,
            )
        except Invalid as err:  # say which line of the file, as the CSV checks do
            err.field = f"line {line}: {err.field}"
            raise
        if row.phone and phone_key:
            values["phone_hash"] = _staff_phone(phone_key, row.phone, line)
        existing = conn.execute(
            select(Staff.id).where(Staff.insurer_id == iid, Staff.staff_no == values["staff_no"])
        ).first()
        if existing:
            conn.execute(Staff.__table__.update().where(Staff.id == existing.id).values(**values))
            updated += 1
        else:
            conn.execute(Staff.__table__.insert().values(insurer_id=iid, **values))
            added += 1
    return added, updated


def _staff_phone(key: bytes, raw: str, line: int) -> str:
    from portal.policies import normalise_phone, phone_hash

    try:
        return phone_hash(key, normalise_phone(raw))
    except Invalid:
        raise Invalid(
            "Line %(line)s: the phone is not a valid mobile number.",
            field="phone",
            code="invalid_phone",
            line=line,
        ) from None
