"""Disclosure: the regulator publishes a ranking as a frozen snapshot (docs/rankings.md).

A snapshot stores every figure as computed, the method, and the ledger checkpoint signed
just before computing it. `ranking_snapshots` is append-only: new ratings never change a
published snapshot; a correction is a new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, or_, select

from portal import audit, ledger, ranking_data
from portal.canonical import timestamp, utc
from portal.errors import Conflict, Invalid, NotFound
from portal.models import SNAPSHOT_SCOPES, LedgerEntry, RankingSnapshot, Rating, utcnow
from portal.rankings import HALF_LIFE_DAYS, Method, Period, Ranking
from portal.ratings import CHINA

# Who may see a snapshot of each scope.
AUDIENCE = {
    "public": {"anonymous", "insurer", "regulator", "admin"},
    "industry": {"insurer", "regulator", "admin"},
    "regulator": {"regulator", "admin"},
}


def visible_scopes(role: str) -> list[str]:
    return [s for s in SNAPSHOT_SCOPES if role in AUDIENCE[s]]


def check_scope(scope: str) -> str:
    if scope not in SNAPSHOT_SCOPES:
        raise Invalid(
            "Choose who may see it: public, industry or regulator only.",
            field="disclosure",
            code="invalid_disclosure",
        )
    return scope


# Regulator-only context: misuse signals and the insurers' reported policies in force
# never leave the regulator's own snapshots (only the derived per-10,000 figures may).
REGULATOR_ONLY = ("counter_flags", "phone_signals", "policies_in_force")


def row_for(row: dict[str, Any], scope: str) -> dict[str, Any]:
    """One ranking row as the audience of `scope` may see it (allow-list by scope)."""
    if scope == "regulator":
        return row
    return {k: v for k, v in row.items() if k not in REGULATOR_ONLY}


def ranking_body(ranking: Ranking, s: ranking_data.Slice, scope: str) -> dict[str, Any]:
    """The frozen figures: what the public page, the API and the exports show."""
    return {
        "slice": s.as_json(),
        "industry_mean": None if ranking.industry_mean is None else round(ranking.industry_mean, 2),
        "medians": {k: None if v is None else round(v, 2) for k, v in ranking.medians.items()},
        "rows": [row_for(r.as_json(), scope) for r in ranking.rows],
    }


PUBLISH_ATTEMPTS = 3


def check_publishable(period: Period, today: date) -> None:
    """Only finished periods are published: one that ends today or later (China time)
    would still change, and the numbers would not be final."""
    if period.end >= today:
        raise Invalid(
            "Only a finished period can be published: %(period)s ends on %(end)s.",
            field="period",
            code="period_not_finished",
            period=period.label,
            end=period.end.isoformat(),
        )


def _uncovered(conn: Connection, s: ranking_data.Slice, tree_size: int) -> int:
    """Verified ratings the ranking may count (its period and the previous one) that are
    not among the checkpoint's first `tree_size` leaves."""
    first, last = s.period.previous().start, s.period.end
    stmt = (
        select(func.count(Rating.id))
        .outerjoin(LedgerEntry, LedgerEntry.rating_id == Rating.id)
        .where(
            Rating.verified,
            Rating.occurred_at >= ranking_data.utc_start(first),
            Rating.occurred_at < ranking_data.utc_start(last + timedelta(days=1)),
            or_(LedgerEntry.leaf_index.is_(None), LedgerEntry.leaf_index >= tree_size),
        )
    )
    return int(conn.execute(stmt).scalar_one())


def _snapshot_transaction(engine: Engine) -> Any:
    """One consistent view for the checkpoint lookup and every figure: repeatable read on
    PostgreSQL; SQLite's write transaction already excludes other writers."""
    if engine.dialect.name == "postgresql":
        return engine.connect().execution_options(isolation_level="REPEATABLE READ")
    return engine.connect()


def publish(
    engine: Engine,
    key: ledger.LedgerKey,
    s: ranking_data.Slice,
    scope: str,
    user_id: int,
    method: Method | None = None,
    today: date | None = None,
) -> int:
    """Sign a checkpoint of everything recorded so far, then compute and freeze in one
    snapshot transaction that counts only ratings the checkpoint covers. Returns the id."""
    check_scope(scope)
    check_publishable(s.period, today or datetime.now(CHINA).date())
    method = method or Method(half_life_days=HALF_LIFE_DAYS)  # build() drops it if plain
    for _ in range(PUBLISH_ATTEMPTS):
        signed = ledger.checkpoint(engine, key)
        with _snapshot_transaction(engine) as conn, conn.begin():
            # The checkpoint just signed, or a later one signed meanwhile (it covers more).
            latest = ledger.latest(conn)
            cp = latest if signed is None or latest.tree_size > signed.tree_size else signed
            if cp is None or _uncovered(conn, s, cp.tree_size):
                continue  # a rating arrived after the checkpoint: sign again
            ranking = ranking_data.build(conn, s, method)
            if not ranking.rows:
                raise Invalid(
                    "There are no ratings in this slice: nothing to publish.",
                    field="period",
                    code="nothing_to_publish",
                )
            return _freeze(conn, ranking, s, scope, user_id, cp)
    raise Conflict("Ratings kept arriving while publishing; please try again.", code="publish_race")


def _freeze(
    conn: Connection,
    ranking: Ranking,
    s: ranking_data.Slice,
    scope: str,
    user_id: int,
    cp: Any,
) -> int:
    body = ranking_body(ranking, s, scope)
    snapshot_id = conn.execute(
        RankingSnapshot.__table__.insert().returning(RankingSnapshot.__table__.c.id),
        {
            "scope": scope,
            "period_kind": s.period.kind,
            "period_start": s.period.start,
            "period_end": s.period.end,
            "region": s.scope.region,
            "stage": s.stage or "",
            "channel": s.channel or "",
            "tree_size": cp.tree_size,
            "root_hash": cp.root_hash,
            "method": json.dumps(ranking.method.as_json()),
            "body": json.dumps(body, ensure_ascii=False),
            "published_by": user_id,
            "published_at": utcnow(),
        },
    ).scalar_one()
    audit.log(conn, f"user:{user_id}", "ranking.publish", str(snapshot_id), scope=scope)
    return int(snapshot_id)


@dataclass(frozen=True)
class Snapshot:
    id: int
    scope: str
    period_kind: str
    period_start: date
    period_end: date
    region: str
    stage: str
    channel: str
    tree_size: int | None
    root_hash: str | None
    method: dict[str, Any]
    body: dict[str, Any]
    published_at: datetime

    @property
    def label(self) -> str:
        return str(self.body["slice"]["period"])

    @property
    def rows(self) -> list[dict[str, Any]]:
        # Filtered again on the way out: snapshots frozen before the allow-list existed.
        return [row_for(r, self.scope) for r in self.body["rows"]]

    def as_json(self, with_rows: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "scope": self.scope,
            "slice": self.body["slice"],
            "published_at": timestamp(self.published_at),
            "checkpoint": {"tree_size": self.tree_size, "root_hash": self.root_hash},
            "method": self.method,
        }
        if with_rows:
            out |= {
                "industry_mean": self.body["industry_mean"],
                "medians": self.body["medians"],
                "rows": self.rows,
            }
        return out


def _snapshot(row: Any) -> Snapshot:
    return Snapshot(
        id=row.id,
        scope=row.scope,
        period_kind=row.period_kind,
        period_start=row.period_start,
        period_end=row.period_end,
        region=row.region,
        stage=row.stage,
        channel=row.channel,
        tree_size=row.tree_size,
        root_hash=row.root_hash,
        method=json.loads(row.method),
        body=json.loads(row.body),
        published_at=utc(row.published_at),
    )


def snapshots(conn: Connection, scopes: list[str], limit: int = 100) -> list[Snapshot]:
    """Published snapshots of the given scopes, newest first."""
    stmt = (
        select(RankingSnapshot)
        .where(RankingSnapshot.scope.in_(scopes))
        .order_by(RankingSnapshot.published_at.desc(), RankingSnapshot.id.desc())
        .limit(limit)
    )
    return [_snapshot(r) for r in conn.execute(stmt)]


def snapshot(conn: Connection, snapshot_id: int, scopes: list[str]) -> Snapshot:
    """One snapshot; one the caller may not see is as absent as one that does not exist."""
    row = conn.execute(
        select(RankingSnapshot).where(
            RankingSnapshot.id == snapshot_id, RankingSnapshot.scope.in_(scopes)
        )
    ).first()
    if row is None:
        raise NotFound("There is no such published ranking.", code="no_snapshot")
    return _snapshot(row)
