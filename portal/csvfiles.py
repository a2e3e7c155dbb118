"""Reading CSV imports (staff, policies, policies in force, return visits) robustly.

Every importer reads its records through `Records`: the header must be one of the
allowed ones (a BOM is allowed), each record comes with the physical line it starts on,
and a record the csv module cannot read (a quote left open, a field over csv's 128 KiB
limit) becomes an Invalid naming that line instead of an exception out of the import;
reading goes on with the next line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from portal.errors import Invalid

MAX_ROWS = 1_000_000  # per file; more is a mistake (or an attack), not an import


class _Lines:
    """The physical lines of a CSV text, fed to csv.reader one by one, so each record's
    first line is known and reading can resume after a record that cannot be parsed."""

    def __init__(self, data: str) -> None:
        self.lines = data.splitlines(keepends=True)
        self.pos = 0  # lines handed out so far

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]


class Records:
    """The header (checked) and then (first line, fields or Invalid) of each non-empty
    record of a CSV text."""

    def __init__(self, data: str, *allowed: tuple[str, ...]) -> None:
        self.src = _Lines(data.lstrip("\ufeff"))
        self.reader = csv.reader(self.src, strict=True)
        try:
            header = next(self.reader, None)
        except csv.Error:
            header = None
        if header is None or tuple(header) not in allowed:
            raise Invalid(
                "The CSV header must be exactly: %(cols)s.",
                field="file",
                code="bad_header",
                cols=" or ".join(",".join(cols) for cols in allowed),
            )
        self.header = tuple(header)

    def __iter__(self) -> Iterator[tuple[int, list[str] | Invalid]]:
        rows = 0
        while True:
            start = self.src.pos + 1
            try:
                rec = next(self.reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield start, csv_error(str(err), start, self.src.pos)
                self.src.pos = start  # the next record starts on the line after this one's
                self.reader = csv.reader(self.src, strict=True)
                continue
            if not rec:  # a blank line
                continue
            rows += 1
            if rows > MAX_ROWS:
                raise Invalid(
                    "The file has more than %(max)s rows (line %(line)s): split it.",
                    field="file",
                    code="too_many_rows",
                    max=MAX_ROWS,
                    line=start,
                )
            yield start, rec

    def fields(self, line: int, rec: list[str]) -> dict[str, str]:
        """A record as header -> value; a wrong number of fields names the line."""
        if len(rec) != len(self.header):
            raise Invalid(
                "Line %(line)s: expected %(n)s columns (%(cols)s), found %(found)s.",
                field="file",
                code="bad_row",
                line=line,
                n=len(self.header),
                cols=",".join(self.header),
                found=len(rec),
            )
        return dict(zip(self.header, rec, strict=True))


def csv_error(message: str, start: int, end: int) -> Invalid:
    if "field limit" in message and end == start:
        return Invalid(
            "A field on line %(line)s is longer than %(kib)s KiB.",
            field="file",
            code="field_too_long",
            line=start,
            kib=csv.field_size_limit() // 1024,
        )
    if end > start or "end of data" in message:
        return Invalid(
            "Unterminated quote from line %(line)s: the record never ends.",
            field="file",
            code="unterminated_quote",
            line=start,
        )
    return Invalid(
        "Line %(line)s is not valid CSV (%(reason)s).",
        field="file",
        code="bad_csv",
        line=start,
        reason=message[:80],
    )
