"""No database: every HTTP path answers 503 with Retry-After (never a 500, never a stack trace)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cpcs.context import Context
from cpcs.db import migrate
from cpcs.db.engine import Database
from cpcs.domain.accounts import add_user
from cpcs.settings import Settings
from cpcs.testing.processes import free_port
from cpcs.web import make_app
from cpcs_api.app import routers as api_routers
from cpcs_ingest.app import routers as ingest_routers
from tests.security.conftest import bearer

TOKEN = "x" * 43


def _app(context: Context) -> FastAPI:
    return make_app(context, title="test", routers=[*ingest_routers(), *api_routers()])


def _unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.fixture
def no_database(tmp_path: Path) -> Iterator[TestClient]:
    """The services on a PostgreSQL URL where nothing listens (connection refused)."""
    url = f"postgresql+psycopg://cpcs@127.0.0.1:{free_port()}/cpcs"
    context = Context(Settings(data_dir=tmp_path / "data", database_url=url))
    try:
        with TestClient(_app(context), raise_server_exceptions=False) as client:
            yield client
    finally:
        context.close()


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/api/v1/alerts", {}),  # a session from the dependency
        ("GET", "/api/v1/points", {"headers": bearer(TOKEN)}),  # the token dependency
        ("GET", "/api/v1/points", {"params": {"hashtag": TOKEN}}),
        (
            "POST",
            "/followup/newevent",
            {"data": {"ivorn": "ivo://X", "ra": "1", "dec": "1", "hashtag": TOKEN}},
        ),
        ("GET", "/followup/list_of_alerts", {}),
        (
            "POST",
            "/api/v1/uploads",
            {"headers": bearer(TOKEN), "data": {"alert": "1"}, "files": {"file": b"x"}},
        ),
        (
            "POST",
            "/followup/cgi/upload",
            {"data": {"EventID": "1", "hashtag": TOKEN}, "files": {"sexCat": b"x"}},
        ),
        ("GET", "/alerts", {}),  # a web page
    ],
)
def test_every_path_answers_503(
    no_database: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    _unavailable(no_database.request(method, path, **kwargs))


def test_readiness_says_what_is_down(no_database: TestClient) -> None:
    response = no_database.get("/readyz")
    _unavailable(response)
    assert response.json()["error"] == "not_ready" and "'database': False" in response.json()["message"]
    assert no_database.get("/healthz").status_code == 200


@pytest.fixture
def sqlite_context(tmp_path: Path) -> Iterator[Context]:
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    migrate.upgrade(settings.sqlalchemy_url)
    context = Context(
        settings, db=Database(settings.sqlalchemy_url, pool_size=1, max_overflow=0, pool_timeout=0.3)
    )
    try:
        yield context
    finally:
        context.close()


def test_an_exhausted_pool_is_503(sqlite_context: Context) -> None:
    client = TestClient(_app(sqlite_context), raise_server_exceptions=False)
    with sqlite_context.db.engine.connect():  # the pool's only connection is taken
        _unavailable(client.get("/api/v1/alerts"))
    assert client.get("/api/v1/alerts").status_code == 200


def test_a_commit_failing_after_the_handler_is_503_not_200(sqlite_context: Context) -> None:
    """The session dependency commits before the answer goes out, so a failed commit is reported."""
    client = TestClient(_app(sqlite_context), raise_server_exceptions=False)
    failing = threading.Event()

    def lose_connection(_session: Any) -> None:
        if failing.is_set():
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    event.listen(sqlite_context.db.sessions, "before_commit", lose_connection)
    failing.set()
    _unavailable(client.get("/api/v1/alerts"))
    failing.clear()
    assert client.get("/api/v1/alerts").status_code == 200


class _BrokenResponse(Response):
    """Fails while it is being sent (as a response that reads the database lazily would)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection lost"))


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (psycopg.OperationalError("connection refused"), 503),  # the driver's own, unwrapped
        (psycopg.InterfaceError("the connection is lost"), 503),
        (ExceptionGroup("task group", [OperationalError("x", {}, Exception("gone"))]), 503),
        (DBAPIError("SELECT 1", {}, Exception("reset"), connection_invalidated=True), 503),
        (RuntimeError("raised during"), 500),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), 500),
    ],
)
def test_database_errors_anywhere_map_to_503_and_bugs_to_500(
    sqlite_context: Context, error: BaseException, status: int
) -> None:
    app = _app(sqlite_context)

    def handler() -> None:
        raise error

    app.add_api_route("/test/raise", handler)
    response = TestClient(app, raise_server_exceptions=False).get("/test/raise")
    assert response.status_code == status
    assert "Traceback" not in response.text and 'File "' not in response.text
    if status == 503:
        _unavailable(response)
    else:
        assert response.json() == {
            "error": "internal_error",
            "message": "The server failed; the error was logged.",
        }


def test_an_error_while_the_response_is_sent_is_503(sqlite_context: Context) -> None:
    app = _app(sqlite_context)
    app.add_api_route("/test/broken-response", lambda: _BrokenResponse())
    _unavailable(TestClient(app, raise_server_exceptions=False).get("/test/broken-response"))


def test_an_error_in_a_middleware_is_503(sqlite_context: Context) -> None:
    app = _app(sqlite_context)

    @app.middleware("http")
    async def failing(request: Any, call_next: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection lost"))

    _unavailable(TestClient(app, raise_server_exceptions=False).get("/healthz"))


def test_a_working_database_still_answers(sqlite_context: Context) -> None:
    with sqlite_context.db.transaction() as session:
        token = add_user(session, "u", observatory="o").token
    client = TestClient(_app(sqlite_context), raise_server_exceptions=False)
    assert client.get("/api/v1/points", headers=bearer(token)).status_code == 200
