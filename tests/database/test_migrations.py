"""One alembic history for SQLite and PostgreSQL: upgrade head, then no drift from the models."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import inspect

from cpcs.cli import main
from cpcs.db import migrate
from cpcs.db.engine import make_engine
from cpcs.db.models import Base
from cpcs.testing.servers import temporary_postgres_database


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
