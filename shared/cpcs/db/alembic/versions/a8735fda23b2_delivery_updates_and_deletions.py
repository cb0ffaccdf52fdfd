"""delivery actions (calibrated, updated, deleted) and where the target keeps the point

Revision ID: a8735fda23b2
Revises: 87ced1e3267c
Create Date: 2026-12-03 18:57:28.854152
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a8735fda23b2"
down_revision: str | None = "87ced1e3267c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("action", sa.String(length=20), server_default="calibrated", nullable=False)
        )
        batch_op.add_column(sa.Column("remote_url", sa.String(length=1100), nullable=True))
        batch_op.drop_constraint(batch_op.f("uq_delivery_kind"), type_="unique")
        batch_op.create_unique_constraint(
            "uq_delivery_once", ["kind", "target_id", "calibration_id", "action"]
        )


def downgrade() -> None:
    # The old key has no action: updates and deletions (and their attempts) cannot stay.
    op.execute(
        "DELETE FROM delivery_attempt WHERE delivery_id IN "
        "(SELECT id FROM delivery WHERE action <> 'calibrated')"
    )
    op.execute("DELETE FROM delivery WHERE action <> 'calibrated'")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_constraint("uq_delivery_once", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_delivery_kind"), ["kind", "target_id", "calibration_id"]
        )
        batch_op.drop_column("remote_url")
        batch_op.drop_column("action")
