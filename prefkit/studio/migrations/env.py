"""Alembic environment: run by :func:`prefkit.studio.store.upgrade` on an open connection.

``render_as_batch=True`` lets later migrations alter SQLite tables (batch mode copies the
table), and the metadata's naming convention gives every constraint a stable name, so the
same migrations run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from alembic import context

from prefkit.studio.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through prefkit.studio.store.upgrade
    raise RuntimeError("run the studio migrations through prefkit.studio.store.upgrade(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
