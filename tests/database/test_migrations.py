"""One alembic history for SQLite and PostgreSQL: upgrade head, then no drift from the models."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import JSON, Connection, DateTime, MetaData, Table, insert, inspect, text

from cpcs.db import migrate
from cpcs.db.engine import make_engine
from cpcs.db.models import Base
from cpcs.db.secret_box import KEY_FILE_NAME, SecretKeyError, keys_from_settings, new_key
from cpcs.settings import Settings
from cpcs.testing.servers import temporary_postgres_database
from cpcs_system.cli import main


def _upgrade_and_check(url: str) -> None:
    migrate.upgrade(url)
    migrate.check(url)  # raises if the models and the migrated schema differ
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) <= tables


def test_sqlite(tmp_path: Path) -> None:
    _upgrade_and_check(f"sqlite:///{tmp_path / 'cpcs.sqlite3'}")


def test_postgresql() -> None:
    with temporary_postgres_database() as url:
        _upgrade_and_check(url)


def test_db_upgrade_says_what_it_did(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"CPCS_DATA_DIR": str(tmp_path / "data")}
    created = runner.invoke(main, ["db", "upgrade"], env=env)
    assert created.exit_code == 0, created.output
    assert created.output.startswith("empty database: schema created at revision ")
    revision = created.output.split()[-1]
    again = runner.invoke(main, ["db", "upgrade"], env=env)
    assert again.exit_code == 0
    assert again.output == f"database already at the newest schema ({revision}); nothing to do\n"


def _insert(connection: Connection, table: Table, **values: Any) -> int:
    """A row with the given values and a plain value in every other required column."""
    for column in table.columns:
        if column.name in values or column.nullable or column.primary_key:
            continue
        if isinstance(column.type, JSON):
            values[column.name] = {}
        elif isinstance(column.type, DateTime):
            values[column.name] = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        else:
            values[column.name] = {str: "x", int: 0, float: 0.0, bool: False}[column.type.python_type]
    key: int = connection.execute(insert(table).values(**values)).inserted_primary_key[0]
    return key


def _observations_before_revisions_are_kept(url: str) -> None:
    """Observations stored before revisions existed get their metadata as revision 1 and the file
    name of their upload."""
    migrate.upgrade(url, "1c176b3d98af")
    engine = make_engine(url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            site = _insert(connection, tables.tables["observatory"])
            user = _insert(connection, tables.tables["user_account"], observatory_id=site)
            alert = _insert(connection, tables.tables["alert"])
            upload = _insert(connection, tables.tables["upload"], sha256="0" * 64, filename="night1.cat")
            _insert(
                connection,
                tables.tables["observation"],
                alert_id=alert,
                user_id=user,
                upload_id=upload,
                mjd=57737.8,
                comment="as uploaded",
            )
        migrate.upgrade(url)
        with engine.connect() as connection:
            [revision] = connection.execute(
                text("SELECT revision, mjd, comment, reason, made_by_id FROM observation_revision")
            ).all()
            filename = connection.execute(text("SELECT filename FROM observation")).scalar_one()
    finally:
        engine.dispose()
    assert tuple(revision) == (1, 57737.8, "as uploaded", "upload", user)
    assert filename == "night1.cat"


def test_existing_observations_get_their_first_revision_sqlite(tmp_path: Path) -> None:
    _observations_before_revisions_are_kept(f"sqlite:///{tmp_path / 'cpcs.sqlite3'}")


def test_existing_observations_get_their_first_revision_postgresql() -> None:
    with temporary_postgres_database() as url:
        _observations_before_revisions_are_kept(url)


def _secrets_stored_in_clear_are_encrypted(url: str) -> None:
    """Webhook secrets and SkyPortal tokens stored in clear before encryption are encrypted by the
    upgrade with the settings' key, and the downgrade gives them back in clear."""
    migrate.upgrade(url, "a8735fda23b2")
    long_token = "t" * 500  # the longest token the API takes, longer once encrypted
    engine = make_engine(url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            site = _insert(connection, tables.tables["observatory"])
            user = _insert(connection, tables.tables["user_account"], observatory_id=site)
            _insert(connection, tables.tables["webhook_subscription"], user_id=user, secret="hook-secret-1")
            _insert(connection, tables.tables["skyportal_destination"], name="Fritz", token=long_token)
        migrate.upgrade(url)

        def stored() -> tuple[str, str]:
            with engine.connect() as connection:
                secret = connection.execute(text("SELECT secret FROM webhook_subscription")).scalar_one()
                token = connection.execute(text("SELECT token FROM skyportal_destination")).scalar_one()
            return secret, token

        secret, token = stored()
        assert "hook-secret-1" not in secret and long_token not in token
        keys = keys_from_settings(Settings(), url).box
        assert (keys.decrypt(secret), keys.decrypt(token)) == ("hook-secret-1", long_token)
        migrate.downgrade(url, "a8735fda23b2")
        assert stored() == ("hook-secret-1", long_token)
    finally:
        engine.dispose()


def test_stored_secrets_are_encrypted_by_the_upgrade_sqlite(tmp_path: Path) -> None:
    database = tmp_path / "cpcs.sqlite3"
    _secrets_stored_in_clear_are_encrypted(f"sqlite:///{database}")
    # No key configured: one was generated beside the database file, owner-only.
    key_file = tmp_path / KEY_FILE_NAME
    assert key_file.is_file() and stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_stored_secrets_are_encrypted_by_the_upgrade_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPCS_SECRET_KEY", f"{new_key()},{new_key()}")
    with temporary_postgres_database() as url:
        _secrets_stored_in_clear_are_encrypted(url)


def test_postgresql_rows_to_encrypt_need_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CPCS_SECRET_KEY", raising=False)
    monkeypatch.delenv("CPCS_SECRET_KEY_FILE", raising=False)
    with temporary_postgres_database() as url:
        migrate.upgrade(url)  # nothing to encrypt: no key needed
        migrate.downgrade(url, "a8735fda23b2")
        engine = make_engine(url)
        try:
            tables = MetaData()
            tables.reflect(engine)
            with engine.begin() as connection:
                _insert(connection, tables.tables["skyportal_destination"], name="Fritz", token="tok")
        finally:
            engine.dispose()
        with pytest.raises(SecretKeyError, match="CPCS_SECRET_KEY is not set"):
            migrate.upgrade(url)
        assert migrate.current_revision(url) == "a8735fda23b2"  # nothing half done
