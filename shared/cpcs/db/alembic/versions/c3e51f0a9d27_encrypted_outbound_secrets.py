"""webhook secrets and SkyPortal tokens encrypted at rest (keys from CPCS_SECRET_KEY)

Revision ID: c3e51f0a9d27
Revises: a8735fda23b2
Create Date: 2026-12-03 19:40:00.000000

The rows already stored are encrypted here with the keys of the settings (for SQLite without
``CPCS_SECRET_KEY``, the ``secret.key`` beside the database file, generated if need be); the
downgrade decrypts them. A database without such rows needs no key.
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from cpcs.db.secret_box import SecretBox, keys_from_settings
from cpcs.settings import Settings

revision: str = "c3e51f0a9d27"
down_revision: str | None = "a8735fda23b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, column, its length before) of every encrypted column.
COLUMNS = (("webhook_subscription", "secret", 200), ("skyportal_destination", "token", 500))


def _keys() -> SecretBox:
    url = op.get_bind().engine.url.render_as_string(hide_password=False)
    return keys_from_settings(Settings(), url).box


def _rewrite(change: Callable[[SecretBox, str], str]) -> None:
    """Every stored value of the encrypted columns replaced by ``change(keys, value)``."""
    connection = op.get_bind()
    keys: SecretBox | None = None
    for table, column, _ in COLUMNS:
        rows = connection.execute(sa.text(f"SELECT id, {column} FROM {table}")).all()
        for row_id, value in rows:
            if value is None:
                continue
            keys = keys or _keys()
            connection.execute(
                sa.text(f"UPDATE {table} SET {column} = :value WHERE id = :id"),
                {"value": change(keys, value), "id": row_id},
            )


def upgrade() -> None:
    for table, column, length in COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column, existing_type=sa.String(length=length), type_=sa.Text(), existing_nullable=False
            )
    _rewrite(lambda keys, value: keys.encrypt(value))


def downgrade() -> None:
    _rewrite(lambda keys, value: keys.decrypt(value))
    for table, column, length in COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column, existing_type=sa.Text(), type_=sa.String(length=length), existing_nullable=False
            )
