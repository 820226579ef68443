"""Alembic's environment for webapp. webapp.schema runs it with a connection that already holds
the migration lock inside one transaction; this file only configures the migration context."""

from __future__ import annotations

from alembic import context

from webapp.models import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "webapp's migrations run through `flask --app webapp db ...` (webapp.schema), "
        "which provides the database connection; offline (--sql) mode is not supported"
    )

context.configure(
    connection=connection,
    # What `db revision --autogenerate` compares the database with.
    target_metadata=Base.metadata,
    # SQLite alters most things by copying the table: batch operations do that. webapp.schema
    # turns foreign keys off while migrating SQLite, or dropping the old copy of a table would
    # cascade to the rows that reference it. Reflection loses AUTOINCREMENT: for users and
    # sign_in_events write op.batch_alter_table(name, table_kwargs={"sqlite_autoincrement":
    # True}) (webapp.schema refuses a migration that drops it).
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)

with context.begin_transaction():
    context.run_migrations()
