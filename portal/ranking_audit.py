"""Re-derive a published snapshot from the ledger, not from the rollups.

An offline check (`portal rankings rederive ID`), so it reads ratings directly, which
page views never do: only the ratings among the first `tree_size` ledger leaves count,
filtered by the snapshot's period, scope, stage and channel, then ranked with the
recorded method. It proves that the frozen numbers follow from the signed ledger.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, select

from portal import disclosure, merkle, ranking_data, rankings
from portal.canonical import rating_leaf_hash
from portal.models import SNAPSHOT_SCOPES, Branch, Insurer, LedgerEntry, Rating
from portal.rankings import Entry, Method, Period, Scope, Tally
from portal.ratings import day_of

COMPARED = ("rank", "rank_change", "count", "score", "grade", "insufficient_data")


@dataclass(frozen=True)
class Mismatch:
    key: str
    field: str
    published: Any
    derived: Any

    def __str__(self) -> str:
        return f"{self.key}: {self.field} published {self.published}, derived {self.derived}"


def _ledger_ratings(conn: Connection, tree_size: int, first: date, last: date) -> list[Any]:
    stmt = (
        select(Rating, Branch.region, Insurer.code, Insurer.name)
        .join(LedgerEntry, LedgerEntry.rating_id == Rating.id)
        .join(Insurer, Insurer.id == Rating.insurer_id)
        .outerjoin(Branch, Branch.id == Rating.branch_id)
        .where(LedgerEntry.leaf_index < tree_size, Rating.verified)
    )
    rows = conn.execute(stmt).all()
    return [r for r in rows if first <= day_of(r.occurred_at) <= last]


def _entries(
    rows: list[Any], period: Period, scope: Scope, snap: Any, method: Method
) -> list[Entry]:
    channels: dict[str, dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
    names: dict[str, str] = {}
    for r in rows:
        day = day_of(r.occurred_at)
        if not period.start <= day <= period.end or not scope.contains(r.region):
            continue
        if (snap.stage and r.stage != snap.stage) or (snap.channel and r.channel != snap.channel):
            continue
        weight = 1.0
        if method.half_life_days:
            weight = rankings.recency_weight((period.end - day).days, method.half_life_days)
        score = r.score
        channels[r.code][r.channel] += Tally.of(
            1, score, score * score, r.top_box, r.bottom_box, weight=weight
        )
        names[r.code] = r.name
    return [
        Entry(code, names[code], rankings.total_of(ch.values()), dict(ch))
        for code, ch in channels.items()
    ]


def check_tree(conn: Connection, tree_size: int, root_hash: str | None) -> list[Mismatch]:
    """The first `tree_size` leaves: each rating still hashes to its leaf, and the leaves
    give the snapshot's root (portal.canonical and portal.merkle, as the ledger does)."""
    stmt = (
        select(
            LedgerEntry.leaf_index,
            LedgerEntry.leaf_hash.label("ledger_hash"),
            LedgerEntry.rating_id.label("entry_rating"),
            *Rating.__table__.c,
        )
        .select_from(LedgerEntry)
        .outerjoin(Rating, Rating.id == LedgerEntry.rating_id)
        .where(LedgerEntry.leaf_index < tree_size)
        .order_by(LedgerEntry.leaf_index)
    )
    out, leaves = [], []
    for r in conn.execute(stmt):
        leaves.append(bytes.fromhex(r.ledger_hash))
        got = None if r.id is None else rating_leaf_hash(r._mapping)
        if got != r.ledger_hash:
            out.append(Mismatch(str(r.entry_rating), "leaf_hash", r.ledger_hash, got))
    if len(leaves) != tree_size:
        return [*out, Mismatch("-", "tree_size", tree_size, len(leaves))]
    root = merkle.root(leaves).hex()
    if root != root_hash:
        out.append(Mismatch("-", "root_hash", root_hash, root))
    return out


def rederive(conn: Connection, snapshot_id: int) -> list[Mismatch]:
    """Differences between a snapshot and its re-derivation (empty: they agree): the
    checkpoint's leaves and root first, then every compared figure."""
    snap = disclosure.snapshot(conn, snapshot_id, list(SNAPSHOT_SCOPES))
    if snap.tree_size is None:
        return [Mismatch("-", "tree_size", None, "a checkpoint")]
    tree = check_tree(conn, snap.tree_size, snap.root_hash)
    s = snap.body["slice"]
    period = Period(snap.period_kind, snap.period_start, snap.period_end)
    scope = Scope(s["scope"], snap.region)
    method = Method(
        prior_weight=float(snap.method["prior_weight"]),
        min_count=int(snap.method["min_count"]),
        half_life_days=snap.method.get("half_life_days"),
    )
    before = period.previous()
    rows = _ledger_ratings(conn, snap.tree_size, before.start, period.end)
    previous = rankings.rank(_entries(rows, before, scope, snap, method), method)
    ranks = {r.key: r.rank for r in previous.rows}
    derived = rankings.rank(_entries(rows, period, scope, snap, method), method, ranks)
    # Reply figures, policies and flags are context, not derived from the ledger: only the
    # rating figures are compared.
    got = {r["key"]: r for r in disclosure.ranking_body(derived, _slice(snap), snap.scope)["rows"]}
    want = {r["key"]: r for r in snap.rows}
    out = tree + [
        Mismatch(k, "present", k in want, k in got) for k in sorted(want.keys() ^ got.keys())
    ]
    for k in sorted(want.keys() & got.keys()):
        out += [Mismatch(k, f, want[k][f], got[k][f]) for f in COMPARED if want[k][f] != got[k][f]]
    return out


def _slice(snap: Any) -> ranking_data.Slice:
    s = snap.body["slice"]
    return ranking_data.Slice(
        Period(snap.period_kind, snap.period_start, snap.period_end),
        Scope(s["scope"], snap.region),
        snap.stage or None,
        snap.channel or None,
        recency=bool(s.get("recency_weighted")),
    )
