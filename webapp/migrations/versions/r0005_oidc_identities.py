"""OpenID Connect sign-in: the provider accounts linked to users, the provider session each
session came from (for back-channel logout), and the logout tokens already used (replays).
Provider names are short enough for "oidc:<name>" to fit the sign-in history's method column
as it is, so that large table is not rebuilt.

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oidc_identities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("provider", "subject"),
        sa.Index("ix_oidc_identities_user_id", "user_id"),
    )
    op.create_table(
        "oidc_logout_tokens",
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("jti", sa.String(255), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_oidc_logout_tokens_seen_at", "seen_at"),
    )
    with op.batch_alter_table("user_sessions") as batch:
        batch.add_column(sa.Column("oidc_provider", sa.String(32), nullable=True))
        batch.add_column(sa.Column("oidc_sid", sa.String(255), nullable=True))
        batch.create_index("ix_user_sessions_oidc_provider", ["oidc_provider"])
        batch.create_index("ix_user_sessions_oidc_sid", ["oidc_sid"])


def downgrade() -> None:
    with op.batch_alter_table("user_sessions") as batch:
        batch.drop_index("ix_user_sessions_oidc_sid")
        batch.drop_index("ix_user_sessions_oidc_provider")
        batch.drop_column("oidc_sid")
        batch.drop_column("oidc_provider")
    op.drop_table("oidc_logout_tokens")
    op.drop_table("oidc_identities")
