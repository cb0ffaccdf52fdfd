"""Body limits hold while the body streams in: 413 before the rest is read, nothing kept on disk."""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from tests.security.conftest import ALERT, LiveServer, SystemFactory, add_alert, bearer, read_response

KIB = 1024
BOUNDARY = "cpcs-test-boundary"


class CountingApp:
    """Counts the body bytes the server hands to the app (what the app pulled)."""

    def __init__(self, app: Any):
        self.app = app
        self.pulled = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.pulled += len(message.get("body", b""))
            return message

        await self.app(scope, counting, send)


def multipart_head(token: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="alert"\r\n\r\n{ALERT}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.cat"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def request_head(path: str, token: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{extra}\r\n"
    ).encode()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's temporary folder (where multipart parsing spools files), watched by the test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read(
    make_system: SystemFactory,
) -> None:
    system = make_system(max_upload_bytes=256 * KIB)
    app = CountingApp(system.assembly.app)
    with LiveServer(app) as server, server.connect() as sock:
        sock.sendall(request_head("/api/v1/uploads", system.observer_token, "Content-Length: 1000000000\r\n"))
        status, headers, body = read_response(sock)
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "request_too_large"
    assert app.pulled == 0


def test_a_streamed_body_is_cut_off_at_the_limit(make_system: SystemFactory, private_tmp: Path) -> None:
    system = make_system(max_upload_bytes=256 * KIB, max_form_overhead_bytes=64 * KIB)
    limit = 320 * KIB
    app = CountingApp(system.assembly.app)
    total = 64 * 1024 * KIB
    sent = 0
    stop = threading.Event()

    def stream(sock: Any) -> None:
        nonlocal sent
        chunk = b"1 10.0 20.0 15.0 0.01\n" * 3000  # ~66 KB of catalogue rows per chunk
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            sock.sendall(
                request_head("/api/v1/uploads", system.observer_token, "Transfer-Encoding: chunked\r\n")
            )
            head = multipart_head(system.observer_token)
            sock.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
            while sent < total and not stop.is_set():
                sock.sendall(frame)
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed the connection

    with LiveServer(app) as server, server.connect() as sock:
        sender = threading.Thread(target=stream, args=(sock,), daemon=True)
        sender.start()
        status, _, body = read_response(sock, timeout_s=30)
        stop.set()
        sender.join(timeout=30)
    assert status == 413 and json.loads(body)["error"] == "request_too_large"
    assert limit < app.pulled <= limit + 512 * KIB, app.pulled  # stopped within one read of the limit
    assert sent < total  # answered while the client was still sending
    staging = system.context.settings.uploads_dir / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []
    assert list(private_tmp.iterdir()) == []


def test_an_upload_under_the_limit_is_accepted(make_system: SystemFactory, gaia16aye_field: Any) -> None:
    from cpcs.simulation.catalogue_simulator import to_sextractor_ascii

    field = gaia16aye_field
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    system = make_system(max_upload_bytes=len(catalogue) + 10, max_form_overhead_bytes=4 * KIB)
    add_alert(system)
    accepted = system.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "mjd": "57737.5"},
        files={"file": ("a.cat", catalogue)},
        headers=bearer(system.observer_token),
    )
    assert accepted.status_code == 202, accepted.text


def test_the_file_itself_is_held_to_max_upload_bytes(make_system: SystemFactory) -> None:
    system = make_system(max_upload_bytes=1000)
    add_alert(system)
    response = system.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT},
        files={"file": ("a.cat", b"x" * 2000)},
        headers=bearer(system.observer_token),
    )
    assert response.status_code == 413 and response.json()["error"] == "file_too_large"


def test_other_routes_take_at_most_max_request_bytes(make_system: SystemFactory) -> None:
    system = make_system(max_request_bytes=64 * KIB)
    client = system.client
    big = {"name": "ivo://X", "ra_deg": 1.0, "dec_deg": 2.0, "url": "x" * (100 * KIB)}
    declared = client.post("/api/v1/alerts", json=big, headers=bearer(system.observer_token))
    assert declared.status_code == 413 and declared.json()["error"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b"ivorn=ivo%3A%2F%2FY&ra=1&dec=2&url="
        for _ in range(20):
            yield b"x" * (8 * KIB)

    streamed = client.post(
        "/followup/newevent",
        content=chunks(),
        headers={**bearer(system.observer_token), "Content-Type": "application/x-www-form-urlencoded"},
    )
    # The legacy handler reads its form itself and would call an interrupted form unreadable (422).
    assert streamed.status_code == 413 and streamed.json()["error"] == "request_too_large"
    small = client.post(
        "/followup/newevent",
        data={"ivorn": "ivo://Z", "ra": "1", "dec": "2"},
        headers=bearer(system.observer_token),
    )
    assert small.status_code == 201


@pytest.mark.parametrize("path", ["/api/v1/uploads", "/followup/cgi/upload"])
def test_upload_forms_have_field_limits(make_system: SystemFactory, path: str) -> None:
    system = make_system()
    add_alert(system)
    client, headers = system.client, bearer(system.observer_token)
    file_field = "file" if path.endswith("uploads") else "sexCat"
    base = {"alert": ALERT, "EventID": ALERT}
    many = {**base, **{f"extra{n}": "1" for n in range(60)}}
    too_many = client.post(path, data=many, files={file_field: ("a.cat", b"x")}, headers=headers)
    assert too_many.status_code == 400 and "fields" in too_many.json()["message"]
    long_field = {**base, "comment": "x" * (100 * KIB)}
    too_long = client.post(path, data=long_field, files={file_field: ("a.cat", b"x")}, headers=headers)
    assert too_long.status_code == 400 and too_long.json()["error"] == "bad_request"
    files = [(file_field, ("a.cat", b"x")), (file_field, ("b.cat", b"y")), ("other", ("c.cat", b"z"))]
    too_many_files = client.post(path, data=base, files=files, headers=headers)
    assert too_many_files.status_code == 400 and "files" in too_many_files.json()["message"]
