"""Engine and session factory for SQLite (embedded) and PostgreSQL (distributed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from cpcs.db.secret_box import SecretBox, bind_secret_box

#: The SQLite file holds tokens' digests, webhook secrets and destination tokens: owner only.
SQLITE_FILE_MODE = 0o600


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite file (and fix its journal files) readable and writable by the owner only."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir():
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, SQLITE_FILE_MODE))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            file.chmod(SQLITE_FILE_MODE)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout, enforced foreign keys and a private file."""
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


class Database:
    """An engine and its session factory; ``transaction()`` commits or rolls back.

    ``secret_box`` holds the keys of the encrypted columns; without it a
    :class:`~cpcs.context.Context` gives the keys of its settings on first use.
    """

    def __init__(self, url: str, *, secret_box: SecretBox | None = None, **engine_kwargs: Any):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if secret_box is not None:
            bind_secret_box(self.engine, lambda: secret_box)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
