"""Every encrypted value in the database at once: check that the keys read them, re-encrypt them.

At the api's start :func:`unreadable_secrets` names the stored secrets no configured key decrypts
(their deliveries would fail); ``cpcs secrets rotate`` calls :func:`rotate_secrets` after a new
key was put first in ``CPCS_SECRET_KEY``, so that the old key can then be dropped.
"""

from __future__ import annotations

from sqlalchemy import text

from cpcs.db.engine import Database
from cpcs.db.secret_box import SecretUnreadable, secret_box_of

#: (table, column, what a row is called) of every encrypted column.
ENCRYPTED_COLUMNS = (
    ("webhook_subscription", "secret", "webhook"),
    ("skyportal_destination", "token", "SkyPortal destination"),
)


def unreadable_secrets(db: Database) -> list[str]:
    """The rows (e.g. ``"webhook 3"``) whose stored secret no key of ``db`` decrypts."""
    box = secret_box_of(db.engine)
    unreadable = []
    with db.transaction() as session:
        for table, column, label in ENCRYPTED_COLUMNS:
            for row_id, stored in session.execute(text(f"SELECT id, {column} FROM {table} ORDER BY id")):
                try:
                    box.decrypt(stored)
                except SecretUnreadable:
                    unreadable.append(f"{label} {row_id}")
    return unreadable


def rotate_secrets(db: Database) -> int:
    """Encrypt every stored secret again with the first key; the number of values rewritten.

    One transaction: when any value is unreadable nothing changes and
    :class:`~cpcs.db.secret_box.SecretUnreadable` is raised.
    """
    box = secret_box_of(db.engine)
    rewritten = 0
    with db.transaction() as session:
        for table, column, _ in ENCRYPTED_COLUMNS:
            rows = session.execute(text(f"SELECT id, {column} FROM {table} ORDER BY id")).all()
            for row_id, stored in rows:
                session.execute(
                    text(f"UPDATE {table} SET {column} = :value WHERE id = :id"),
                    {"value": box.rotate(stored), "id": row_id},
                )
                rewritten += 1
    return rewritten
