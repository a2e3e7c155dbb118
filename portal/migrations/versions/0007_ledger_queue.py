"""ledger_queue: ratings waiting for the checkpointer, so a checkpoint reads only those

Before, the checkpointer found unsequenced ratings by an anti-join of all ratings with
all ledger entries: O(all ratings) per checkpoint (seconds at 10M). Now record() queues
each rating in its own transaction and the checkpointer reads the open rows through a
partial index. Existing ratings are queued here, already stamped when sequenced.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_queue",
        sa.Column("rating_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sequenced_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["rating_id"],
            ["ratings.id"],
        ),
        sa.PrimaryKeyConstraint("rating_id"),
    )
    op.create_index(
        "ix_ledger_queue_open",
        "ledger_queue",
        ["recorded_at", "rating_id"],
        unique=False,
        sqlite_where=sa.text("sequenced_at IS NULL"),
        postgresql_where=sa.text("sequenced_at IS NULL"),
    )
    op.execute(
        "INSERT INTO ledger_queue (rating_id, recorded_at, sequenced_at) "
        "SELECT r.id, r.recorded_at, e.sequenced_at FROM ratings r "
        "LEFT JOIN ledger_entries e ON e.rating_id = r.id"
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_queue_open", table_name="ledger_queue")
    op.drop_table("ledger_queue")
