"""The clinician app's server-side sessions (pathway/app/sessions.py): a row per browser
session, found by a hash of its cookie, its content encrypted with a key derived from the cookie.
Before, the app created this table itself in each worker.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database whose workers already made the table (the app's first release) keeps it.
    if sa.inspect(op.get_bind()).has_table("app_session"):
        return
    op.create_table(
        "app_session",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("app_session")
