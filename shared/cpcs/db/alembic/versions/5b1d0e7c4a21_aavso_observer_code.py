"""aavso observer code and sharing consent

Revision ID: 5b1d0e7c4a21
Revises: 5b7e2a91c4d0
Create Date: 2026-12-04 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b1d0e7c4a21"
down_revision: str | None = "5b7e2a91c4d0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A plain ADD/DROP COLUMN, not a batch: SQLite rebuilding user_account would break the foreign keys
# that point at it; both databases add and drop a nullable column in place.


CONSENT_COLUMNS = ("share_skyportal", "share_webhooks", "share_tns")


def upgrade() -> None:
    op.add_column("user_account", sa.Column("aavso_obscode", sa.String(length=10), nullable=True))
    for name in CONSENT_COLUMNS:  # everyone shares, as before, until they say otherwise
        op.add_column("user_account", sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    for name in reversed(CONSENT_COLUMNS):
        op.drop_column("user_account", name)
    op.drop_column("user_account", "aavso_obscode")
