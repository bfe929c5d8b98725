"""Alembic's environment for the store: run by `pathway.store.schema.upgrade` (and so by `pathway
db upgrade` and `pathway serve`) on the connection it is given; no alembic.ini is needed."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
