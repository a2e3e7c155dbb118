"""Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portal.config import Settings
from portal.db import make_engine
from portal.models import SQLModel


def test_migrations_match_the_models(scratch_settings: Settings) -> None:
    engine = make_engine(scratch_settings.database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    # search_* are the SQL search fallback's own tables, made by portal.search at run time.
    drift = [d for d in diff if not (isinstance(d, tuple) and "search_" in str(d[1]))]
    assert drift == []
