"""monthly rollups: rollup_daily and rollup_staff_daily summed per calendar month

At national spread rollup_daily holds nearly one row per rating, so a ranking of a
quarter read ~1/8 of a table as big as the ratings. The monthly tables are maintained
in each rating's transaction beside the daily ones (portal.rollups.add) and filled
here from the daily rows, which hold the same sums.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MEASURES = "n, sum_score, sum_sq, top, bottom"
SUMS = "SUM(n), SUM(sum_score), SUM(sum_sq), SUM(top), SUM(bottom)"


def _measures() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("sum_score", sa.BigInteger(), nullable=False),
        sa.Column("sum_sq", sa.BigInteger(), nullable=False),
        sa.Column("top", sa.Integer(), nullable=False),
        sa.Column("bottom", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "rollup_monthly",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("insurer_id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint("month", "insurer_id", "branch_id", "stage", "channel", "verified"),
    )
    # Every column: province and city views read it without a lookup per row.
    op.create_index(
        "ix_rollup_monthly_branch_month",
        "rollup_monthly",
        ["branch_id", "month", "stage", "verified", "channel", "insurer_id", *MEASURES.split(", ")],
        unique=False,
    )
    op.create_table(
        "rollup_staff_monthly",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint("month", "staff_id", "stage", "channel"),
    )
    op.create_index(
        "ix_rollup_staff_monthly_staff", "rollup_staff_monthly", ["staff_id", "month"], unique=False
    )
    if op.get_bind().dialect.name == "postgresql":
        month = "CAST(date_trunc('month', day) AS date)"
    else:
        month = "date(day, 'start of month')"
    op.execute(
        f"INSERT INTO rollup_monthly (month, insurer_id, branch_id, stage, channel, verified, "
        f"{MEASURES}) SELECT {month}, insurer_id, branch_id, stage, channel, verified, {SUMS} "
        f"FROM rollup_daily GROUP BY {month}, insurer_id, branch_id, stage, channel, verified"
    )
    op.execute(
        f"INSERT INTO rollup_staff_monthly (month, staff_id, stage, channel, {MEASURES}) "
        f"SELECT {month}, staff_id, stage, channel, {SUMS} "
        f"FROM rollup_staff_daily GROUP BY {month}, staff_id, stage, channel"
    )


def downgrade() -> None:
    op.drop_index("ix_rollup_staff_monthly_staff", table_name="rollup_staff_monthly")
    op.drop_table("rollup_staff_monthly")
    op.drop_index("ix_rollup_monthly_branch_month", table_name="rollup_monthly")
    op.drop_table("rollup_monthly")
