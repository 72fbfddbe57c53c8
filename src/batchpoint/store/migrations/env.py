"""Alembic environment: run programmatically by :func:`batchpoint.store.migrate.upgrade`."""

from alembic import context

from batchpoint.store.tables import Base

config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
