"""The canonical encoding of a rating: what its leaf hash commits to.

Version 1, documented in docs/ledger.md. The bytes are the JSON object below with keys
sorted, no insignificant whitespace, UTF-8, integers as decimal, booleans as
`true`/`false`, absent values as `null` (this is RFC 8785 JCS for these value types):

    {"branch": int|null, "channel": str, "corrects": str|null, "id": str,
     "insurer": int, "occurred_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "recorded_at": (same),
     "scale": 3|5, "score": 0..100, "source": str, "staff": int|null, "stage": str,
     "text": hex SHA-256(salt || UTF-8 text) | null, "top": bool, "bottom": bool,
     "v": 1, "value": int, "verified": bool}

Leaf hash = SHA-256(0x00 || bytes), hex (RFC 6962).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from portal.merkle import leaf_hash

VERSION = 1


def utc(dt: datetime) -> datetime:
    """Aware UTC; a naive value (as SQLite returns it) is taken to be UTC already."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def timestamp(dt: datetime) -> str:
    """ "YYYY-MM-DDTHH:MM:SS.ffffffZ", what strftime("%Y-%m-%dT%H:%M:%S.%fZ") gives for
    years from 1000 on, at half its cost (it is hashed several times per rating)."""
    return utc(dt).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parts_fingerprint(*parts: object) -> str:
    """SHA-256 of a request's meaningful fields: same key, other body -> 409."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def text_commitment(salt: bytes, text: str) -> str:
    """SHA-256 over a random per-rating salt and the text, so short texts cannot be guessed."""
    return hashlib.sha256(salt + text.encode("utf-8")).hexdigest()


def canonical_bytes(row: Mapping[str, Any]) -> bytes:
    """Encode a stored rating row (column names as in the `ratings` table)."""
    doc = {
        "v": VERSION,
        "id": row["id"],
        "insurer": row["insurer_id"],
        "branch": row["branch_id"],
        "staff": row["staff_id"],
        "stage": row["stage"],
        "channel": row["channel"],
        "scale": row["scale"],
        "value": row["value"],
        "score": row["score"],
        "top": bool(row["top_box"]),
        "bottom": bool(row["bottom_box"]),
        "verified": bool(row["verified"]),
        "occurred_at": timestamp(row["occurred_at"]),
        "recorded_at": timestamp(row["recorded_at"]),
        "text": row["text_hash"],
        "corrects": row["corrects_id"],
        "source": row["source"],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rating_leaf_hash(row: Mapping[str, Any]) -> str:
    return leaf_hash(canonical_bytes(row)).hex()
