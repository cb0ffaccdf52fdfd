"""outbox rows keep the trace context of the span that wrote them

Revision ID: 3e9c5d2f7a18
Revises: 9e4c2b7d1f30
Create Date: 2026-12-04 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3e9c5d2f7a18"
down_revision: str | None = "9e4c2b7d1f30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: rows written before (or with tracing off) have no context and are published untraced.
    op.add_column("outbox", sa.Column("trace_context", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "trace_context")
