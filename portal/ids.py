"""Ids of the rows that grow without end: ratings and counter service sessions.

A UUIDv7 (RFC 9562) in hex: 48 bits of Unix milliseconds, then counter and random bits,
32 lowercase hex digits like the random ids before it. Rows made one after another get
ids that sort one after another, so every index keyed by them (the ratings' primary key,
the ledger queue's, the ledger's unique `rating_id`, the texts') takes each new id at its
right-hand end instead of at a random page. With random ids, 100k new ratings on top of
millions dirtied nearly every page of those indexes: on a 3M-row table 100k inserts
wrote 144 MB of WAL in 1.7 s, against 16 MB in 0.34 s with time-ordered ids
(docs/performance.md, the checkpoint).

An id tells when its row was made, to the millisecond: a rating's receipt gives its
`recorded_at` anyway, and a rating is shown with its date. An id is not a secret:
knowing one grants nothing (a receipt page needs its token, a press its device's).
"""

from __future__ import annotations

from uuid_utils import uuid7


def new_id() -> str:
    """A fresh, time-ordered id: later calls in this process sort after earlier ones."""
    return uuid7().hex
