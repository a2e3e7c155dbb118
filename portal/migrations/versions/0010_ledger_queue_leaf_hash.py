"""ledger_queue.leaf_hash: the checkpointer sequences from the queue without a join

Each queue row now carries its rating's leaf hash, written by record() in the rating's
own transaction, so the checkpointer's INSERT ... SELECT reads only the queue's open
index instead of joining every new leaf to `ratings` (a quarter of its time). Existing
rows are filled from their ratings here. The column stays nullable: a row written by an
older app during a rolling deploy has none, and the checkpointer then takes the
rating's hash.

A queue row's identity and hash are frozen (rating_id, recorded_at, leaf_hash may not
be updated, on SQLite and PostgreSQL alike): the app role may UPDATE the queue to stamp
`sequenced_at`, and must not be able to hand the checkpointer a different leaf.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FROZEN = "rating_id, recorded_at, leaf_hash"
MESSAGE = "ledger_queue: rating_id, recorded_at and leaf_hash cannot be changed"

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION gongping_queue_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
END $$;
"""


def upgrade() -> None:
    op.add_column(
        "ledger_queue",
        sa.Column("leaf_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    )
    # Only the open rows: the hash is read for them alone (the checkpointer, verify's
    # pending check), and the queue keeps a row per rating for ever, so rewriting every
    # row would hold the table's lock for as long as the ratings are many.
    op.execute(
        "UPDATE ledger_queue SET leaf_hash = "
        "(SELECT r.leaf_hash FROM ratings r WHERE r.id = ledger_queue.rating_id) "
        "WHERE sequenced_at IS NULL"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            f"CREATE TRIGGER ledger_queue_frozen BEFORE UPDATE OF {FROZEN} ON ledger_queue "
            "FOR EACH ROW EXECUTE FUNCTION gongping_queue_frozen()"
        )
        # ALWAYS: session_replication_role=replica must not silence it.
        op.execute("ALTER TABLE ledger_queue ENABLE ALWAYS TRIGGER ledger_queue_frozen")
    else:
        op.execute(
            f"CREATE TRIGGER ledger_queue_frozen BEFORE UPDATE OF {FROZEN} ON ledger_queue "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_queue_frozen ON ledger_queue")
        op.execute("DROP FUNCTION IF EXISTS gongping_queue_frozen()")
    else:
        op.execute("DROP TRIGGER IF EXISTS ledger_queue_frozen")
    op.drop_column("ledger_queue", "leaf_hash")
