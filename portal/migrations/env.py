"""Alembic environment: runs as the owner role, on the URL handed over by portal.db."""

from alembic import context

from portal.db import make_engine
from portal.models import SQLModel

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
engine = make_engine(url)


def include_object(obj: object, name: str | None, type_: str, *_: object) -> bool:
    """The SQL search fallback makes its own search_* tables at run time: not ours."""
    return not (type_ == "table" and (name or "").startswith("search_"))


with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
