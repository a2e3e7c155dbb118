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


def _approved(extra: str = "") -> str:
    """An approved decision exists for a request about the rating of the NEW row."""
    return (
        "EXISTS (SELECT 1 FROM takedown_requests r JOIN takedown_decisions d "
        "ON d.request_id = r.id WHERE r.rating_id = NEW.rating_id "
        f"AND d.decision = 'approved'{extra})"
    )


def text_violation(ne: str) -> str:
    """What no UPDATE of rating_texts may do; `ne` is the null-safe inequality."""
    personal = _approved(" AND r.reason = 'personal_data'")
    return " OR ".join(
        [
            "NEW.rating_id <> OLD.rating_id",
            "NEW.salt <> OLD.salt",
            f"NOT {_approved()}",  # nothing changes without an approved request
            "(OLD.hidden AND NOT NEW.hidden)",  # a hidden text never comes back
            "(OLD.redacted AND NOT NEW.redacted)",
            # hiding: dated, and with the reason of an approved request
            "(NEW.hidden AND NOT OLD.hidden AND (NEW.hidden_at IS NULL OR NOT "
            + _approved(" AND r.reason = NEW.hidden_reason")
            + "))",
            # otherwise the notice's date and reason never change
            f"((OLD.hidden OR NOT NEW.hidden) AND (NEW.hidden_at {ne} OLD.hidden_at "
            f"OR NEW.hidden_reason {ne} OLD.hidden_reason))",
            # the body only ever changes to its erasure, for an approved personal-data request
            f"(NEW.body <> OLD.body AND (NEW.body <> '' OR NOT NEW.redacted OR NOT NEW.hidden "
            f"OR NOT {personal}))",
            f"(NEW.redacted AND NOT OLD.redacted AND (NEW.body <> '' OR NOT {personal}))",
        ]
    )


def request_violation(ne: str) -> str:
    """A request is fixed once made; its status only follows its (append-only) decision."""
    fixed = ("id", "rating_id", "insurer_id", "reason", "explanation", "requested_by", "source")
    return " OR ".join(
        [
            *(f"NEW.{c} <> OLD.{c}" for c in fixed),
            f"NEW.requested_at {ne} OLD.requested_at",
            f"(NEW.status <> OLD.status AND (OLD.status <> 'pending' OR NEW.status {ne} "
            "(SELECT d.decision FROM takedown_decisions d WHERE d.request_id = NEW.id)))",
        ]
    )


PG_GUARDS = f"""
CREATE OR REPLACE FUNCTION gongping_text_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'rating text: DELETE is not allowed' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF {text_violation("IS DISTINCT FROM")} THEN
    RAISE EXCEPTION 'rating text: only an approved takedown hides or redacts it'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION gongping_request_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' OR {request_violation("IS DISTINCT FROM")} THEN
    RAISE EXCEPTION 'takedown request: % is not allowed', TG_OP
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
"""
GUARDED = {"rating_texts": "gongping_text_guard", "takedown_requests": "gongping_request_guard"}


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
        op.execute(PG_GUARDS)
        for t, fn in GUARDED.items():
            op.execute(
                f"CREATE TRIGGER {t}_guard BEFORE UPDATE OR DELETE ON {t} "
                f"FOR EACH ROW EXECUTE FUNCTION {fn}()"
            )
        for t in (*APPEND_ONLY, *GUARDED):
            op.execute(
                f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION gongping_append_only()"
            )
            op.execute(f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER {t}_no_truncate")
            guard = f"{t}_no_change" if t in APPEND_ONLY else f"{t}_guard"
            op.execute(f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER {guard}")
        return
    for t, unique in APPEND_ONLY.items():
        for sql in _sqlite_append_only(t, unique):
            op.execute(sql)
    for t, violation, message in (
        ("rating_texts", text_violation("IS NOT"), "only an approved takedown hides or redacts it"),
        ("takedown_requests", request_violation("IS NOT"), "a request is fixed once made"),
    ):
        op.execute(
            f"CREATE TRIGGER {t}_guard BEFORE UPDATE ON {t} WHEN {violation} "
            f"BEGIN SELECT RAISE(ABORT, '{t}: {message}'); END"
        )
        op.execute(
            f"CREATE TRIGGER {t}_no_delete BEFORE DELETE ON {t} "
            f"BEGIN SELECT RAISE(ABORT, '{t}: DELETE is not allowed'); END"
        )
    # INSERT OR REPLACE deletes the old row without firing DELETE triggers unless the
    # connection has recursive_triggers on (ours do; the sqlite3 shell does not).
    for t, key in (("rating_texts", "rating_id"), ("takedown_requests", "id")):
        op.execute(
            f"CREATE TRIGGER {t}_no_replace BEFORE INSERT ON {t} "
            f"WHEN EXISTS (SELECT 1 FROM {t} WHERE {key} = NEW.{key}) "
            f"BEGIN SELECT RAISE(ABORT, '{t}: REPLACE is not allowed'); END"
        )


def drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_change ON {t}")
        for t in (*APPEND_ONLY, *GUARDED):
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        for t, fn in GUARDED.items():
            op.execute(f"DROP TRIGGER IF EXISTS {t}_guard ON {t}")
            op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
        return
    for t in APPEND_ONLY:
        for action in ("update", "delete", "replace"):
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_{action}")
    for t in GUARDED:
        for name in ("guard", "no_delete", "no_replace"):
            op.execute(f"DROP TRIGGER IF EXISTS {t}_{name}")


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
        sa.Column("text", sa.Text(), nullable=False),
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

    op.create_index(
        "uq_takedown_pending",
        "takedown_requests",
        ["rating_id"],
        unique=True,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )

    with op.batch_alter_table("insurers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("policy_format", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
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

    op.drop_index("uq_takedown_pending", table_name="takedown_requests")

    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.drop_constraint("uq_replies_rating_author", type_="unique")
        batch_op.drop_column("working_days")

    with op.batch_alter_table("rating_texts", schema=None) as batch_op:
        batch_op.drop_column("hidden_reason")

    with op.batch_alter_table("insurers", schema=None) as batch_op:
        batch_op.drop_column("policy_format")

    with op.batch_alter_table("screening_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_screening_flags_rating_id"))

    op.drop_table("screening_flags")
    with op.batch_alter_table("reply_revisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reply_revisions_reply_id"))

    op.drop_table("reply_revisions")
    # ### end Alembic commands ###
