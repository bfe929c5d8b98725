"""Seen JWT ids are stored as the SHA-256 of their key (issuer|jti), not the key cut to 300
characters (issue 10: two long jtis with a common prefix were one). Data only, same column: the
rows a running release wrote are hashed so that a token seen just before the upgrade is still a
replay after it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import hashlib
import re

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

HASHED = re.compile(r"[0-9a-f]{64}")


def upgrade() -> None:
    bind = op.get_bind()
    seen = sa.table("seen_jti", sa.column("key", sa.String))
    for (key,) in bind.execute(sa.select(seen.c.key)).fetchall():
        if HASHED.fullmatch(key):
            continue  # written by this release already
        digest = hashlib.sha256(key.encode()).hexdigest()
        bind.execute(sa.update(seen).where(seen.c.key == key).values(key=digest))


def downgrade() -> None:
    # The hashes cannot be turned back; the rows expire within minutes: drop them.
    op.execute("DELETE FROM seen_jti")
