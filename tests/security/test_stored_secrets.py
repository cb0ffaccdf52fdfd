"""The keys of the stored secrets: where they come from, what a missing or wrong one does, rotation."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from cpcs.context import Context
from cpcs.db import migrate
from cpcs.db.delivery_models import WebhookSubscription
from cpcs.db.engine import Database
from cpcs.db.secret_box import (
    KEY_FILE_NAME,
    SecretBox,
    SecretKeyError,
    SecretUnreadable,
    keys_from_settings,
    new_key,
)
from cpcs.db.stored_secrets import unreadable_secrets
from cpcs.domain.accounts import add_user
from cpcs.settings import Settings
from cpcs.testing.servers import temporary_postgres_database
from cpcs_system.cli import main


def test_an_sqlite_data_folder_gets_one_private_key_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="cpcs.context"):
        first = Context(settings)
        keys = first.secret_keys
    key_file = tmp_path / "data" / KEY_FILE_NAME
    assert keys.generated and keys.source == str(key_file.resolve())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert any(
        "generated a secret key" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )
    token = keys.box.encrypt("webhook secret")
    first.close()
    again = keys_from_settings(settings)  # a restart reads the same key, and makes none
    assert not again.generated and again.box.decrypt(token) == "webhook secret"


def test_a_configured_key_wins_and_no_file_is_written(tmp_path: Path) -> None:
    key = new_key()
    keys = keys_from_settings(Settings(data_dir=tmp_path / "data", secret_key=key))
    assert keys.source == "CPCS_SECRET_KEY" and not keys.generated
    assert SecretBox([key]).decrypt(keys.box.encrypt("x")) == "x"
    assert not (tmp_path / "data" / KEY_FILE_NAME).exists()
    key_file = tmp_path / "k"
    key_file.write_text(key + "\n")
    from_file = keys_from_settings(Settings(data_dir=tmp_path / "data", secret_key_file=key_file))
    assert from_file.box.fingerprint == keys.box.fingerprint


def test_postgresql_needs_the_key_and_a_malformed_key_is_named(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:5432/none"
    with pytest.raises(SecretKeyError, match=r"CPCS_SECRET_KEY is not set.*every api process"):
        keys_from_settings(Settings(data_dir=tmp_path, database_url=url))
    with pytest.raises(SecretKeyError, match="key 2 is not a Fernet key"):
        keys_from_settings(Settings(data_dir=tmp_path, secret_key=f"{new_key()},not-a-key"))
    with pytest.raises(SecretKeyError, match="is not a file"):
        keys_from_settings(Settings(data_dir=tmp_path, secret_key_file=tmp_path / "missing"))


def test_the_api_on_postgresql_without_a_key_stops_at_start_with_the_reason(tmp_path: Path) -> None:
    with temporary_postgres_database() as url:
        migrate.upgrade(url)
        env = {
            "CPCS_DATA_DIR": str(tmp_path / "data"),
            "CPCS_DATABASE_URL": url,
            "CPCS_BROKER_URL": None,
            "CPCS_SECRET_KEY": None,
            "CPCS_SECRET_KEY_FILE": None,
        }
        result = CliRunner().invoke(main, ["service", "run", "api"], env=env)
    assert result.exit_code == 2, result.output
    assert "error (secret_key_missing): CPCS_SECRET_KEY is not set" in result.output
    assert "cpcs secrets new-key" in result.output and "Traceback" not in result.output


def _webhook_with(database: Database, secret: str) -> int:
    with database.transaction() as session:
        user = add_user(session, "K. Rybicki", observatory="Ostrowik 0.6m")
        row = WebhookSubscription(user_id=user.id, url="https://example.org/hook", secret=secret)
        session.add(row)
        session.flush()
        return row.id


def test_key_rotation_new_key_first_then_rotate_then_drop_the_old(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    data = tmp_path / "data"
    data.mkdir()
    url = Settings(data_dir=data).sqlalchemy_url
    migrate.upgrade(url)
    written = Database(url, secret_box=SecretBox([old]))
    webhook_id = _webhook_with(written, "the signing key")
    written.dispose()

    # Both keys, the new first: the old value still reads; new values are written with the new key.
    both = Database(url, secret_box=SecretBox([new, old]))
    assert unreadable_secrets(both) == []
    with both.transaction() as session:
        row = session.get(WebhookSubscription, webhook_id)
        assert row is not None and row.secret == "the signing key"
    both.dispose()
    only_new = Database(url, secret_box=SecretBox([new]))
    assert unreadable_secrets(only_new) == [f"webhook {webhook_id}"]  # not rotated yet

    env = {"CPCS_DATA_DIR": str(data), "CPCS_DATABASE_URL": None, "CPCS_SECRET_KEY": f"{new},{old}"}
    rotated = CliRunner().invoke(main, ["secrets", "rotate"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert rotated.output == f"1 stored secrets encrypted with key {SecretBox([new]).fingerprint}\n"

    assert unreadable_secrets(only_new) == []  # the old key can go
    with only_new.transaction() as session:
        row = session.get(WebhookSubscription, webhook_id)
        assert row is not None and row.secret == "the signing key"
    with only_new.engine.connect() as connection:
        stored = connection.execute(text("SELECT secret FROM webhook_subscription")).scalar_one()
    with pytest.raises(SecretUnreadable):
        SecretBox([old]).decrypt(stored)
    only_new.dispose()

    # Rotating with a key that reads nothing changes nothing and says why.
    refused = CliRunner().invoke(main, ["secrets", "rotate"], env={**env, "CPCS_SECRET_KEY": new_key()})
    assert refused.exit_code == 2 and "error (secret_unreadable)" in refused.output
    assert unreadable_secrets(Database(url, secret_box=SecretBox([new]))) == []


def test_new_key_prints_a_usable_key() -> None:
    result = CliRunner().invoke(main, ["secrets", "new-key"])
    assert result.exit_code == 0
    box = SecretBox([result.output.strip()])
    assert box.decrypt(box.encrypt("token")) == "token"
