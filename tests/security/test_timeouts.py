"""Time limits: slow handlers, slow bodies and slow headers end with an answer or a closed connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import Any, cast

import pytest

from cpcs.security import header_timeout_protocol
from cpcs.settings import Settings
from cpcs.web import CpcsApp
from cpcs_system import launcher
from tests.security.conftest import LiveServer, SystemFactory, read_response


def test_a_slow_handler_is_answered_503_at_the_time_limit(make_system: SystemFactory) -> None:
    system = make_system(request_timeout_s=0.5)
    app = system.assembly.app
    assert app is not None
    finished: list[str] = []

    def slow_thread() -> dict[str, str]:
        time.sleep(2)
        finished.append("thread")
        return {"late": "answer"}

    async def slow_async() -> dict[str, str]:
        await asyncio.sleep(2)
        finished.append("async")
        return {"late": "answer"}

    app.add_api_route("/test/slow-thread", slow_thread)
    app.add_api_route("/test/slow-async", slow_async)
    for path in ("/test/slow-thread", "/test/slow-async"):
        started = time.monotonic()
        response = system.client.get(path)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "request_timeout" and response.headers["retry-after"]
        assert 0.4 < elapsed < 1.5
    time.sleep(2.2)
    assert finished == ["thread"]  # the coroutine was cancelled; the thread ran to its end, unheard
    assert system.client.get("/healthz").status_code == 200


def test_a_body_that_stops_arriving_gets_408(make_system: SystemFactory) -> None:
    system = make_system(request_timeout_s=0.5)
    with LiveServer(system.assembly.app) as server, server.connect() as sock:
        sock.sendall(
            b"POST /followup/newevent HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Authorization: Bearer {system.observer_token}\r\n\r\n".encode()
            + b"ivorn=ivo"
        )
        started = time.monotonic()
        status, headers, body = read_response(sock)
        elapsed = time.monotonic() - started
    assert status == 408 and json.loads(body)["error"] == "request_timeout"
    assert headers.get("connection") == "close" and elapsed < 3


def test_uploads_have_their_own_longer_limit(make_system: SystemFactory) -> None:
    system = make_system(request_timeout_s=0.2, upload_timeout_s=30)
    assert isinstance(system.assembly.app, CpcsApp) and system.assembly.app.door is not None
    door = system.assembly.app.door
    upload = {"type": "http", "method": "POST", "path": "/api/v1/uploads", "headers": []}
    other = {"type": "http", "method": "GET", "path": "/api/v1/alerts", "headers": []}
    assert door.time_limit(upload) == 30 + system.context.settings.legacy_wait_s
    assert door.time_limit(other) == 0.2


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """Whether the server closes the connection within ``seconds`` while we trickle bytes."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if trickle:
                sock.sendall(trickle)
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_headers_must_arrive_in_time(make_system: SystemFactory) -> None:
    system = make_system()
    protocol = header_timeout_protocol(0.6)
    with LiveServer(system.assembly.app, http=protocol) as server:
        with server.connect() as slow:  # a byte of header every 0.2 s, never finished
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            assert _closed_within(slow, 3, trickle=b"a")
        with server.connect() as idle:  # connects and says nothing
            assert _closed_within(idle, 3)
        with server.connect() as fine:  # two requests on one connection, each in time
            for _ in range(2):
                fine.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, _ = read_response(fine)
                assert status == 200
                time.sleep(0.3)


def test_headers_over_the_size_limit_are_refused(make_system: SystemFactory) -> None:
    system = make_system()
    server = LiveServer(system.assembly.app, h11_max_incomplete_event_size=16 * 1024)
    with server, server.connect() as sock:
        # (h11 measures what waits for the end of the headers: they come in two parts.)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
        time.sleep(0.3)
        with contextlib.suppress(OSError):
            sock.sendall(b"a" * 20_000 + b"\r\n\r\n")
        status, _, _ = read_response(sock)
    assert status == 400


def test_serve_configures_uvicorn_for_slow_clients(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    seen: dict[str, Any] = {}

    class Stub:
        app = object()

        def start_background(self) -> None: ...

        def stop(self) -> None: ...

    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: seen.update(kwargs))
    settings = Settings(data_dir=tmp_path, http_max_header_bytes=8192, http_keep_alive_s=3)
    launcher.serve(cast(launcher.Assembly, Stub()), settings)
    assert seen["h11_max_incomplete_event_size"] == 8192 and seen["timeout_keep_alive"] == 3
    assert seen["http"].__name__ == "HeaderTimeoutH11Protocol"
    assert seen["proxy_headers"] is False  # no proxy configured: X-Forwarded-For is never read
