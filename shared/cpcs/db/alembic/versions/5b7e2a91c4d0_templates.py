"""templates: reference images of an alert's field; the subtraction step of a reduction

Revision ID: 5b7e2a91c4d0
Revises: c3e51f0a9d27
Create Date: 2026-12-04 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b7e2a91c4d0"
down_revision: str | None = "c3e51f0a9d27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=True),
        sa.Column("filter_declared", sa.String(length=40), nullable=False),
        sa.Column("band", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("stored_path", sa.String(length=1000), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=True),
        sa.Column("wcs_header", sa.Text(), nullable=False),
        sa.Column("footprint", sa.JSON(), nullable=False),
        sa.Column("overlap_fraction", sa.Float(), nullable=False),
        sa.Column("fwhm_px", sa.Float(), nullable=True),
        sa.Column("fwhm_arcsec", sa.Float(), nullable=True),
        sa.Column("depth_inst_mag", sa.Float(), nullable=True),
        sa.Column("mjd", sa.Float(), nullable=True),
        sa.Column("observation_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alert.id"], name=op.f("fk_template_alert_id_alert")),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instrument.id"], name=op.f("fk_template_instrument_id_instrument")
        ),
        sa.ForeignKeyConstraint(
            ["observation_id"], ["observation.id"], name=op.f("fk_template_observation_id_observation")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_template_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template")),
    )
    with op.batch_alter_table("template", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_template_alert_id"), ["alert_id"], unique=False)
    with op.batch_alter_table("image_reduction", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subtraction", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("image_reduction", schema=None) as batch_op:
        batch_op.drop_column("subtraction")
    with op.batch_alter_table("template", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_template_alert_id"))
    op.drop_table("template")
