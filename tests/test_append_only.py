"""Invariant 1: stored ratings (and ledger, checkpoints, audit) are never changed or deleted,
not through the app and not through plain SQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from portal.models import APPEND_ONLY, Rating
from portal.ratings import record
from tests.factories import make_world, rating_in

ATTACKS = [
    "UPDATE ratings SET score = 100, value = 5 WHERE id = :id",
    "UPDATE ratings SET stage = 'issuance' WHERE id = :id",
    "UPDATE ratings SET occurred_at = recorded_at WHERE id = :id",
    "DELETE FROM ratings WHERE id = :id",
]


def _snapshot(engine: Engine, rid: str) -> tuple:
    with engine.connect() as conn:
        return tuple(conn.execute(text("SELECT * FROM ratings WHERE id = :id"), {"id": rid}).one())


@pytest.fixture(scope="module")
def stored(engine: Engine) -> str:
    return record(engine, rating_in(make_world(engine), value=1)).id


@pytest.mark.parametrize("sql", ATTACKS)
@pytest.mark.parametrize("who", ["app", "owner"])
def test_raw_sql_cannot_change_a_rating(
    request: pytest.FixtureRequest, stored: str, sql: str, who: str
) -> None:
    engine: Engine = request.getfixturevalue("engine" if who == "app" else "owner_engine")
    before = _snapshot(engine, stored)
    raw = engine.raw_connection()  # through the driver itself, not our code
    try:
        cur = raw.cursor()
        with pytest.raises(Exception, match=r"(?i)append-only|permission denied"):
            cur.execute(
                sql.replace(":id", "%s" if engine.dialect.name == "postgresql" else "?"), (stored,)
            )
        raw.rollback()
    finally:
        raw.close()
    assert _snapshot(engine, stored) == before


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_every_append_only_table_has_its_triggers(owner_engine: Engine, table: str) -> None:
    with owner_engine.connect() as conn:
        if owner_engine.dialect.name == "postgresql":
            rows = conn.execute(
                text(
                    "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass) "
                    "AND NOT tgisinternal"
                ),
                {"t": table},
            ).all()
            assert {(n, e) for n, e in rows} >= {
                (f"{table}_no_change", "A"),
                (f"{table}_no_truncate", "A"),
            }
        else:
            names = {
                r[0]
                for r in conn.execute(
                    text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
                    {"t": table},
                )
            }
            assert names >= {f"{table}_no_update", f"{table}_no_delete", f"{table}_no_replace"}


@pytest.mark.postgres_only
def test_postgres_truncate_and_replica_mode_are_refused(owner_engine: Engine, stored: str) -> None:
    before = _snapshot(owner_engine, stored)
    for sql in ("TRUNCATE ratings CASCADE", "TRUNCATE ledger_entries"):
        with owner_engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(sql))
    # Replication mode silences ordinary triggers, but ours are ENABLE ALWAYS.
    with owner_engine.connect() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        with pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text("DELETE FROM ratings WHERE id = :id"), {"id": stored})
    assert _snapshot(owner_engine, stored) == before


@pytest.mark.postgres_only
def test_postgres_app_role_has_only_insert_and_select(engine: Engine) -> None:
    with engine.connect() as conn:
        for table in APPEND_ONLY:
            privs = {
                p: conn.execute(
                    text("SELECT has_table_privilege(current_user, :t, :p)"), {"t": table, "p": p}
                ).scalar_one()
                for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
            }
            assert privs == {
                "SELECT": True,
                "INSERT": True,
                "UPDATE": False,
                "DELETE": False,
                "TRUNCATE": False,
            }, table


@pytest.mark.sqlite_only
def test_sqlite_connection_is_defensive_and_durable(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        conn.exec_driver_sql("PRAGMA writable_schema=ON")
        # Defensive mode: even with writable_schema, the schema cannot be rewritten.
        with pytest.raises(DBAPIError, match="may not be modified"):
            conn.exec_driver_sql("UPDATE sqlite_master SET sql = '' WHERE name = 'ratings'")


def _replace_sql(dialect: str) -> str:
    """Re-insert the row with a better score, as an upsert would."""
    cols = [c.name for c in Rating.__table__.c]
    picked = ", ".join("100" if c == "score" else c for c in cols)
    if dialect == "postgresql":
        return (
            f"INSERT INTO ratings ({', '.join(cols)}) SELECT {picked} FROM ratings "
            "WHERE id = %s ON CONFLICT (id) DO UPDATE SET score = EXCLUDED.score"
        )
    return (
        f"INSERT OR REPLACE INTO ratings ({', '.join(cols)}) "
        f"SELECT {picked} FROM ratings WHERE id = ?"
    )


@pytest.mark.parametrize("recursive", [True, False])
def test_upsert_or_replace_cannot_change_a_rating(
    owner_engine: Engine, stored: str, recursive: bool
) -> None:
    before = _snapshot(owner_engine, stored)
    raw = owner_engine.raw_connection()
    try:
        cur = raw.cursor()
        if owner_engine.dialect.name == "sqlite" and not recursive:
            cur.execute("PRAGMA recursive_triggers=OFF")  # an attacker's own connection
        with pytest.raises(Exception, match=r"(?i)append-only"):
            cur.execute(_replace_sql(owner_engine.dialect.name), (stored,))
        raw.rollback()
    finally:
        raw.close()
    assert _snapshot(owner_engine, stored) == before


@pytest.mark.postgres_only
def test_postgres_app_role_can_delete_nothing(engine: Engine) -> None:
    with engine.connect() as conn:
        deletable = conn.execute(
            text(
                "SELECT table_name FROM information_schema.table_privileges "
                "WHERE grantee = current_user AND privilege_type IN ('DELETE', 'TRUNCATE')"
            )
        ).all()
    assert deletable == []
