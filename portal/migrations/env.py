"""Alembic environment: runs as the owner role, on the URL handed over by portal.db."""

from alembic import context

from portal.db import make_engine
from portal.models import SQLModel

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
