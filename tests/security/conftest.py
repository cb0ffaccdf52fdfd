"""Fixtures of the security tests: an embedded system with chosen settings, served for real if needed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from cpcs.settings import Settings
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

ALERT = "ivo://Gaia16aye"
SystemFactory = Callable[..., System]


@pytest.fixture
def make_system(tmp_path: Path) -> Iterator[SystemFactory]:
    """``make_system(**settings)``: the embedded system on a fresh data folder with those settings."""
    started: list[System] = []

    def make(**overrides: Any) -> System:
        settings = Settings(
            data_dir=tmp_path / f"data{len(started)}",
            retry_base_s=0.05,
            outbox_poll_s=0.05,
            legacy_wait_s=5,
            **overrides,
        )
        system = start_system(settings)
        started.append(system)
        return system

    try:
        yield make
    finally:
        for system in started:
            system.client.close()
            system.assembly.stop()


def add_alert(system: System) -> int:
    response = system.client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=bearer(system.observer_token),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class LiveServer:
    """An ASGI app served by uvicorn on a loopback port, in a thread (a real socket, real streaming)."""

    def __init__(self, app: Any, **config: Any):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = int(self.socket.getsockname()[1])
        settings = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", **config
        )
        self.server = uvicorn.Server(settings)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


def read_response(sock: socket.socket, timeout_s: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response read from a raw socket."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body
