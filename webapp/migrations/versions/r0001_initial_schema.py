"""Initial schema: users, user_sessions, remember_tokens, sign_in_events.

Exactly what `Base.metadata.create_all` made before webapp had migrations, so a database created
that way is adopted by stamping it at this revision (webapp.migrate compares it with SCHEMA).

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: This revision's tables, frozen here (webapp/models.py moves on with later revisions).
SCHEMA = sa.MetaData()

sa.Table(
    "users",
    SCHEMA,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("username_key", sa.String(64), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("username_key"),
    # AUTOINCREMENT: SQLite never hands out an id again, so a stale session cannot load
    # someone else.
    sqlite_autoincrement=True,
)

sa.Table(
    "remember_tokens",
    SCHEMA,
    sa.Column("selector", sa.String(32), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("user_id", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
    sa.Index("ix_remember_tokens_user_id", "user_id"),
)

sa.Table(
    "sign_in_events",
    SCHEMA,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("user_id", sa.Integer(), nullable=True),
    sa.Column("username_key", sa.String(64), nullable=False),
    sa.Column("ip", sa.String(45), nullable=True),
    sa.Column("user_agent", sa.String(512), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
    sa.Index("ix_sign_in_events_at", "at"),
    sa.Index("ix_sign_in_events_ip", "ip"),
    sa.Index("ix_sign_in_events_user_id", "user_id"),
    sa.Index("ix_sign_in_events_username_key", "username_key"),
    sqlite_autoincrement=True,
)

sa.Table(
    "user_sessions",
    SCHEMA,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("sid_hash", sa.String(64), nullable=False),
    sa.Column("user_id", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ip", sa.String(45), nullable=True),
    sa.Column("user_agent", sa.String(512), nullable=False),
    sa.UniqueConstraint("sid_hash"),
    sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
    sa.Index("ix_user_sessions_created_at", "created_at"),
    sa.Index("ix_user_sessions_last_active_at", "last_active_at"),
    sa.Index("ix_user_sessions_user_id", "user_id"),
)


def upgrade() -> None:
    # The same statements, in the same order, as create_all: tables by dependency, each with
    # its indexes.
    for table in SCHEMA.sorted_tables:
        op.execute(CreateTable(table))
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            op.execute(CreateIndex(index))


def downgrade() -> None:
    for table in reversed(SCHEMA.sorted_tables):
        op.execute(DropTable(table))  # drops its indexes too
