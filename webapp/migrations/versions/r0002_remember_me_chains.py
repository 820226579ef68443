"""Remember-me tokens bound to sessions, in chains, with theft detection.

remember_tokens.series names a token's chain and replaced_at marks a token a newer one of its
chain replaced (kept to recognise an old copy presented again); user_sessions.remember_series
names the chain a session belongs to; users.remember_reused_at holds a theft not yet told.

Tokens issued before this revision belong to no session, so ending a session could not end
them: they are deleted (those devices sign in with their password once more).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM remember_tokens"))
    # A NOT NULL column without a default: SQLite adds it only to an empty table (it is now).
    with op.batch_alter_table("remember_tokens") as batch:
        batch.add_column(sa.Column("series", sa.String(32), nullable=False))
        batch.add_column(sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_remember_tokens_series", ["series"])
    with op.batch_alter_table("user_sessions") as batch:
        batch.add_column(sa.Column("remember_series", sa.String(32), nullable=True))
        batch.create_index("ix_user_sessions_remember_series", ["remember_series"])
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("remember_reused_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("remember_reused_at")
    with op.batch_alter_table("user_sessions") as batch:
        batch.drop_index("ix_user_sessions_remember_series")
        batch.drop_column("remember_series")
    with op.batch_alter_table("remember_tokens") as batch:
        batch.drop_index("ix_remember_tokens_series")
        batch.drop_column("replaced_at")
        batch.drop_column("series")
