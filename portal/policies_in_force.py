"""Policies in force that insurers report per month: the denominators of the
dissatisfied-per-10,000 and complaint-index figures (docs/rankings.md).

Reports come by CSV (`portal policies-in-force import`) or the signed API. Every row
must be valid or nothing is stored; a later report for the same month replaces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from portal.csvfiles import Records
from portal.errors import Invalid
from portal.models import Insurer, PoliciesInForce, utcnow

COLUMNS = ("insurer", "month", "policies")
MAX_POLICIES = 10**10  # more than every policy in force in the country
MAX_ROWS = 10_000


@dataclass(frozen=True)
class Report:
    insurer: str
    month: date
    policies: int


def parse_month(value: str, field: str = "month") -> date:
    value = value.strip()
    m = re.fullmatch(r"(\d{4})-(\d{2})", value)
    if not m or not 1 <= int(m[2]) <= 12 or int(m[1]) < 2000:
        raise Invalid(
            "“%(value)s” is not a month: use YYYY-MM, e.g. 2026-10.",
            field=field,
            code="invalid_month",
            value=value[:20],
        )
    return date(int(m[1]), int(m[2]), 1)


def parse_count(value: Any, field: str = "policies") -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isascii() or not text.isdigit():
        raise Invalid(
            "The number of policies must be a whole number from 1 to %(max)s.",
            field=field,
            code="invalid_policies",
            max=MAX_POLICIES,
        )
    n = int(text)
    if not 1 <= n <= MAX_POLICIES:
        raise Invalid(
            "The number of policies must be a whole number from 1 to %(max)s.",
            field=field,
            code="invalid_policies",
            max=MAX_POLICIES,
        )
    return n


def parse_csv(data: str) -> list[Report]:
    """`insurer,month,policies` with a header; the first bad line raises Invalid (all or
    nothing), naming its line."""
    records = Records(data, COLUMNS)
    rows = []
    for line, rec in records:
        if isinstance(rec, Invalid):  # an open quote, a field over 128 KiB
            raise rec
        if len(rows) >= MAX_ROWS:
            raise Invalid(
                "The file has more than %(max)s rows (line %(line)s): split it.",
                field="file",
                code="too_many_rows",
                max=MAX_ROWS,
                line=line,
            )
        fields = records.fields(line, rec)
        try:
            month = parse_month(fields["month"])
            count = parse_count(fields["policies"])
        except Invalid as err:
            err.field = f"line {line}: {err.field}"
            raise
        rows.append(Report(fields["insurer"].strip().upper(), month, count))
    return rows


def apply(conn: Connection, reports: list[Report], source: str) -> dict[str, int]:
    """Store the reports (all insurers must exist, or nothing is stored)."""
    codes = {r.insurer for r in reports}
    ids = dict(conn.execute(select(Insurer.code, Insurer.id).where(Insurer.code.in_(codes))).all())
    unknown = sorted(codes - ids.keys())
    if unknown:
        raise Invalid(
            "Unknown insurer “%(value)s”.",
            field="insurer",
            code="unknown_insurer",
            value=unknown[0],
        )
    values = {
        (ids[r.insurer], r.month): {
            "insurer_id": ids[r.insurer],
            "month": r.month,
            "policies": r.policies,
            "source": source,
            "reported_at": utcnow(),
        }
        for r in reports
    }  # the last report of a month in one file wins
    if values:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(PoliciesInForce.__table__)
        stmt = stmt.on_conflict_do_update(
            index_elements=["insurer_id", "month"],
            set_={c: stmt.excluded[c] for c in ("policies", "source", "reported_at")},
        )
        conn.execute(stmt, [values[k] for k in sorted(values)])
    return {"months": len(values)}
