"""consent to publish points on Hermes

Revision ID: 3e9c41d7b8a5
Revises: 3e9c5d2f7a18
Create Date: 2026-12-04 03:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3e9c41d7b8a5"
down_revision: str | None = "3e9c5d2f7a18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A plain ADD/DROP COLUMN, as for the other consent columns (no SQLite batch rebuild of user_account).


def upgrade() -> None:
    op.add_column(
        "user_account", sa.Column("share_hermes", sa.Boolean(), nullable=False, server_default=sa.true())
    )


def downgrade() -> None:
    op.drop_column("user_account", "share_hermes")
