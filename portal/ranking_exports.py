"""CSV and XLSX of a ranking view or snapshot: the method and the checkpoint in the header
rows, so a downloaded file says how its numbers were made and on which ledger state."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

COLUMNS = (
    "rank",
    "rank_change",
    "key",
    "name",
    "insufficient_data",
    "count",
    "score",
    "grade",
    "mean",
    "mean_low",
    "mean_high",
    "satisfied_pct",
    "satisfied_low",
    "satisfied_high",
    "dissatisfied_pct",
    "policies_in_force",
    "dissatisfied_per_10k_policies",
    "complaint_index",
    "reply_rate",
    "reply_days",
    "change_share",
    "counter_flags",
    "phone_signals",
    "channel_mix",
)
# Spreadsheet programs run cells starting with these as formulas (CSV injection).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def columns_for(scope: str) -> tuple[str, ...]:
    """The export's columns for an audience: regulator-only context only for regulators."""
    from portal.disclosure import REGULATOR_ONLY

    if scope == "regulator":
        return COLUMNS
    return tuple(c for c in COLUMNS if c not in REGULATOR_ONLY)


def flat(row: dict[str, Any], columns: Sequence[str] = COLUMNS) -> list[Any]:
    """One ranking row (the JSON shape of rankings.Ranked) as the export's columns."""
    out = dict(row)
    for name, prefix in (("mean", "mean"), ("satisfied_pct", "satisfied")):
        part = row.get(name) or {}
        out[name] = part.get("value")
        out[f"{prefix}_low"], out[f"{prefix}_high"] = part.get("low"), part.get("high")
    out["dissatisfied_pct"] = (row.get("dissatisfied_pct") or {}).get("value")
    mix = row.get("channel_mix") or {}
    out["channel_mix"] = " ".join(f"{k}:{v['share']}%" for k, v in mix.items())
    return [_cell(out.get(c)) for c in columns]


def header_rows(title: str, meta: dict[str, Any]) -> list[list[Any]]:
    """Title, slice, method and checkpoint, then a blank row before the table."""
    cp = meta.get("checkpoint") or {}
    return [
        [_cell(title)],
        ["slice", json.dumps(meta["slice"], ensure_ascii=False)],
        ["method", json.dumps(meta["method"], ensure_ascii=False)],
        ["checkpoint_tree_size", cp.get("tree_size"), "root_hash", cp.get("root_hash")],
        ["published_at", meta.get("published_at") or ""],
        [],
    ]


def to_csv(
    title: str,
    meta: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str] = COLUMNS,
) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerows(header_rows(title, meta))
    writer.writerow(columns)
    writer.writerows(flat(r, columns) for r in rows)
    return "\ufeff" + buf.getvalue()  # BOM: spreadsheet programs then read it as UTF-8


def to_xlsx(
    title: str,
    meta: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str] = COLUMNS,
) -> bytes:
    from openpyxl import Workbook  # ~6 MB: loaded by the first spreadsheet export only

    wb = Workbook()
    ws = wb.active
    ws.title = "ranking"
    for line in header_rows(title, meta):
        ws.append(line)
    ws.append(list(columns))
    for r in rows:
        ws.append(flat(r, columns))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
