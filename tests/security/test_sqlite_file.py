"""The embedded database file, which holds webhook secrets and destination tokens, is private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cpcs.db.engine import Database
from tests.security.conftest import SystemFactory, add_alert


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_file_and_its_journal_are_owner_only(make_system: SystemFactory) -> None:
    old_umask = os.umask(0o022)  # the usual umask, which alone would give 0644
    try:
        system = make_system()
        add_alert(system)  # something written: the WAL file exists now
    finally:
        os.umask(old_umask)
    database = system.context.settings.data_dir / "cpcs.sqlite3"
    assert mode(database) == 0o600
    journal = [p for p in database.parent.iterdir() if p.name.startswith("cpcs.sqlite3-")]
    assert journal and all(mode(p) == 0o600 for p in journal)


def test_an_existing_readable_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Database(f"sqlite:///{path}").dispose()
    assert mode(path) == 0o600
