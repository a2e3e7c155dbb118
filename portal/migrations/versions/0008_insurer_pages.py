"""insurer_pages: a data version per insurer page, bumped by triggers, and its review count

The public insurer page is cached as rendered HTML (portal/page_cache.py) keyed on
`insurer_pages.version`. Triggers bump it in the same transaction as every write that
changes what the page shows, whoever makes it (the app, the CLI, plain SQL), so that
a cache in any worker notices the change on its next request by reading one row:
- rollup_daily (every rating, and `portal rollups rebuild`): the figures;
- rating_texts (a new review, a takedown hiding it, a personal-data redaction): the
  list, and `reviews` (+1 / -1 on insert / delete);
- replies (the insurer's reply, its edit, the reviewer's follow-up): the threads;
- branches (names and regions shown on reviews, the region filter) and insurers (name,
  code, policy-number format used for masking).
On PostgreSQL the counters are split over SLOTS rows per insurer, one chosen per
transaction (`txid_current() % SLOTS`; 64, about as many as the connections writing at
once): a single row would make every rating of an insurer wait for the previous one's
COMMIT (counter ingest with two workers fell from ~167 to ~93 req/s). The version is
the sum of the slots (a sum of counters that only grow changes whenever one does), and
so is the review count. SQLite has one writer at a time and uses slot 0.

Also the partial index of written reviews, newest first (`ix_ratings_insurer_reviews`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (how the trigger finds the insurer from row R, change of `reviews` per op)
SOURCES = {
    "rollup_daily": ("R.insurer_id", {}),
    "rating_texts": (
        "(SELECT insurer_id FROM ratings WHERE id = R.rating_id)",
        {"INSERT": 1, "DELETE": -1},
    ),
    "replies": ("(SELECT insurer_id FROM ratings WHERE id = R.rating_id)", {}),
    "branches": ("R.insurer_id", {}),
    "insurers": ("R.id", {}),
}
OPS = ("INSERT", "UPDATE", "DELETE")

SLOTS = 64  # PostgreSQL: rows per insurer the counters are spread over (see above)
PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION gongping_insurer_page_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r record;
  iid integer;
  delta integer := 0;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  IF TG_TABLE_NAME IN ('rating_texts', 'replies') THEN
    SELECT insurer_id INTO iid FROM ratings WHERE id = r.rating_id;
  ELSIF TG_TABLE_NAME = 'insurers' THEN
    iid := r.id;
  ELSE
    iid := r.insurer_id;
  END IF;
  IF TG_TABLE_NAME = 'rating_texts' THEN
    delta := CASE TG_OP WHEN 'INSERT' THEN 1 WHEN 'DELETE' THEN -1 ELSE 0 END;
  END IF;
  IF iid IS NOT NULL AND NOT (TG_TABLE_NAME = 'insurers' AND TG_OP = 'DELETE') THEN
    INSERT INTO insurer_pages (insurer_id, slot, version, reviews)
    VALUES (iid, (txid_current() % {SLOTS})::integer, 1, delta)
    ON CONFLICT (insurer_id, slot) DO UPDATE
      SET version = insurer_pages.version + 1, reviews = insurer_pages.reviews + delta;
  END IF;
  RETURN NULL;
END $$;
"""


def _sqlite_trigger(table: str, action: str) -> str:
    insurer, deltas = SOURCES[table]
    row = "OLD" if action == "DELETE" else "NEW"
    iid = insurer.replace("R.", f"{row}.")
    delta = deltas.get(action, 0)
    return (
        f"CREATE TRIGGER {table}_page_{action.lower()} AFTER {action} ON {table} "
        f"WHEN {iid} IS NOT NULL BEGIN "
        # Not INSERT OR IGNORE: an upsert firing the trigger would override the OR clause.
        f"INSERT INTO insurer_pages (insurer_id, slot, version, reviews) SELECT {iid}, 0, 0, 0 "
        f"WHERE NOT EXISTS (SELECT 1 FROM insurer_pages WHERE insurer_id = {iid} AND slot = 0); "
        f"UPDATE insurer_pages SET version = version + 1, reviews = reviews + ({delta}) "
        f"WHERE insurer_id = {iid} AND slot = 0; END"
    )


def upgrade() -> None:
    op.create_table(
        "insurer_pages",
        sa.Column("insurer_id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("reviews", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(["insurer_id"], ["insurers.id"]),
        sa.PrimaryKeyConstraint("insurer_id", "slot"),
    )
    op.create_index(
        "ix_ratings_insurer_reviews",
        "ratings",
        ["insurer_id", "occurred_at", "id"],
        unique=False,
        sqlite_where=sa.text("text_hash IS NOT NULL"),
        postgresql_where=sa.text("text_hash IS NOT NULL"),
    )
    op.execute(
        "INSERT INTO insurer_pages (insurer_id, slot, version, reviews) "
        "SELECT i.id, 0, 1, (SELECT count(*) FROM ratings r JOIN rating_texts t "
        "ON t.rating_id = r.id WHERE r.insurer_id = i.id) FROM insurers i"
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(PG_FUNCTION)
    for table in SOURCES:
        for action in OPS:
            if table == "insurers" and action == "DELETE":
                continue  # insurer_pages references it: an insurer is never deleted
            if postgres:
                op.execute(
                    f"CREATE TRIGGER {table}_page_{action.lower()} AFTER {action} ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION gongping_insurer_page_bump()"
                )
            else:
                op.execute(_sqlite_trigger(table, action))


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in SOURCES:
        for action in OPS:
            suffix = f" ON {table}" if postgres else ""
            op.execute(f"DROP TRIGGER IF EXISTS {table}_page_{action.lower()}{suffix}")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS gongping_insurer_page_bump()")
    op.drop_index("ix_ratings_insurer_reviews", table_name="ratings")
    op.drop_table("insurer_pages")
