"""where a survey template came from

Revision ID: 9e4c2b7d1f30
Revises: 5b1d0e7c4a21
Create Date: 2026-12-04 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9e4c2b7d1f30"
down_revision: str | None = "5b1d0e7c4a21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, added in place on both databases: uploaded and archive templates have none.
    op.add_column("template", sa.Column("provenance", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("template", "provenance")
