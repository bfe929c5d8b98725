"""Outbox entries an operator can act on: `failed` becomes `dead`; the last error is kept as
its parts (HTTP status, interaction, OperationOutcome issue code, diagnostics without patient
data); when the entry last changed.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("error_status", sa.Integer))
        batch.add_column(sa.Column("error_interaction", sa.String(200)))
        batch.add_column(sa.Column("error_code", sa.String(60)))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True)))
        batch.create_index("ix_outbox_status", ["status"])
    op.execute("UPDATE outbox SET status = 'dead' WHERE status = 'failed'")
    op.execute("UPDATE outbox SET updated_at = created_at")


def downgrade() -> None:
    op.execute("UPDATE outbox SET status = 'failed' WHERE status = 'dead'")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_status")
        batch.drop_column("updated_at")
        batch.drop_column("error_code")
        batch.drop_column("error_interaction")
        batch.drop_column("error_status")
