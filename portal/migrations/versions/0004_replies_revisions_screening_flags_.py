"""replies revisions, screening flags, takedown source; text guard triggers

Adds two append-only tables (reply_revisions, and takedown_decisions, which was only
protected by the app role's privileges so far) and the guard on rating_texts: a text
can only be hidden (or redacted, for personal data) when an approved takedown decision
for its rating exists, a hidden text never comes back, and nothing deletes one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 03:38:53.432423
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New append-only tables, and each one's unique keys as a condition on the NEW row.
APPEND_ONLY = {
    "takedown_decisions": "id = NEW.id OR request_id = NEW.request_id",
    "reply_revisions": "id = NEW.id",
}

APPROVED = (
    "EXISTS (SELECT 1 FROM takedown_requests r JOIN takedown_decisions d "
    "ON d.request_id = r.id WHERE r.rating_id = NEW.rating_id AND d.decision = 'approved'{})"
)
PERSONAL = " AND r.reason = 'personal_data'"

# What no UPDATE of rating_texts may do (a condition over OLD and NEW, both dialects).
TEXT_VIOLATION = (
    "NEW.rating_id <> OLD.rating_id OR NEW.salt <> OLD.salt"
    " OR (OLD.hidden AND NOT NEW.hidden) OR (OLD.redacted AND NOT NEW.redacted)"
    " OR (NEW.body <> OLD.body AND NOT NEW.redacted)"
    f" OR NOT {APPROVED.format('')}"
    f" OR (NEW.body <> OLD.body AND NOT {APPROVED.format(PERSONAL)})"
)

PG_TEXT_GUARD = f"""
CREATE OR REPLACE FUNCTION gongping_text_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'rating text: DELETE is not allowed' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF {TEXT_VIOLATION} THEN
    RAISE EXCEPTION 'rating text: only an approved takedown hides or redacts it'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
"""


def _sqlite_append_only(table: str, unique: str) -> list[str]:
    sql = [
        f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'append-only table {table}: {action} is not allowed'); END"
        for action in ("UPDATE", "DELETE")
    ]
    sql.append(
        f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
        f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {unique}) "
        f"BEGIN SELECT RAISE(ABORT, 'append-only table {table}: REPLACE is not allowed'); END"
    )
    return sql


def add_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in APPEND_ONLY:  # gongping_append_only() comes from 0001
            op.execute(
                f"CREATE TRIGGER {t}_no_change BEFORE UPDATE OR DELETE ON {t} "
                "FOR EACH ROW EXECUTE FUNCTION gongping_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION gongping_append_only()"
            )
        op.execute(PG_TEXT_GUARD)
        op.execute(
            "CREATE TRIGGER rating_texts_guard BEFORE UPDATE OR DELETE ON rating_texts "
            "FOR EACH ROW EXECUTE FUNCTION gongping_text_guard()"
        )
        op.execute(
            "CREATE TRIGGER rating_texts_no_truncate BEFORE TRUNCATE ON rating_texts "
            "FOR EACH STATEMENT EXECUTE FUNCTION gongping_append_only()"
        )
        for t, name in [(t, f"{t}_no_change") for t in APPEND_ONLY] + [
            *((t, f"{t}_no_truncate") for t in (*APPEND_ONLY, "rating_texts")),
            ("rating_texts", "rating_texts_guard"),
        ]:
            op.execute(f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER {name}")
        return
    for t, unique in APPEND_ONLY.items():
        for sql in _sqlite_append_only(t, unique):
            op.execute(sql)
    op.execute(
        "CREATE TRIGGER rating_texts_guard BEFORE UPDATE ON rating_texts "
        f"WHEN {TEXT_VIOLATION} "
        "BEGIN SELECT RAISE(ABORT, 'rating text: only an approved takedown hides or redacts it'); "
        "END"
    )
    op.execute(
        "CREATE TRIGGER rating_texts_no_delete BEFORE DELETE ON rating_texts "
        "BEGIN SELECT RAISE(ABORT, 'rating text: DELETE is not allowed'); END"
    )


def drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_change ON {t}")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        op.execute("DROP TRIGGER IF EXISTS rating_texts_guard ON rating_texts")
        op.execute("DROP TRIGGER IF EXISTS rating_texts_no_truncate ON rating_texts")
        op.execute("DROP FUNCTION IF EXISTS gongping_text_guard()")
        return
    for t in APPEND_ONLY:
        for action in ("update", "delete", "replace"):
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_{action}")
    op.execute("DROP TRIGGER IF EXISTS rating_texts_guard")
    op.execute("DROP TRIGGER IF EXISTS rating_texts_no_delete")


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "reply_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reply_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("change_made", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reply_id"],
            ["replies.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reply_revisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reply_revisions_reply_id"), ["reply_id"], unique=False)

    op.create_table(
        "screening_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rating_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("reply_id", sa.Integer(), nullable=True),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.Integer(), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
        sa.ForeignKeyConstraint(
            ["rating_id"],
            ["ratings.id"],
        ),
        sa.ForeignKeyConstraint(
            ["reply_id"],
            ["replies.id"],
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("screening_flags", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_screening_flags_rating_id"), ["rating_id"], unique=False
        )

    with op.batch_alter_table("rating_texts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("hidden_reason", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True)
        )

    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("working_days", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint("uq_replies_rating_author", ["rating_id", "author"])

    with op.batch_alter_table("takedown_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "source",
                sqlmodel.sql.sqltypes.AutoString(length=10),
                server_default="insurer",
                nullable=False,
            )
        )

    # ### end Alembic commands ###
    add_triggers()


def downgrade() -> None:
    drop_triggers()
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table("takedown_requests", schema=None) as batch_op:
        batch_op.drop_column("source")

    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.drop_constraint("uq_replies_rating_author", type_="unique")
        batch_op.drop_column("working_days")

    with op.batch_alter_table("rating_texts", schema=None) as batch_op:
        batch_op.drop_column("hidden_reason")

    with op.batch_alter_table("screening_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_screening_flags_rating_id"))

    op.drop_table("screening_flags")
    with op.batch_alter_table("reply_revisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reply_revisions_reply_id"))

    op.drop_table("reply_revisions")
    # ### end Alembic commands ###
