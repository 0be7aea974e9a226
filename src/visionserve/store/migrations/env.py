"""Alembic environment: the engine comes from ``visionserve.store.db.migrate``."""

from alembic import context

from visionserve.store.records import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
