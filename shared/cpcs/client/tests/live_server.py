"""A CPCS server on a free loopback port, in a thread: for clients that speak real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from tests.conftest import System

ALERT = "ivo://Gaia16aye"


@dataclass
class LiveSystem:
    system: System
    url: str


class ServerThread:
    """A uvicorn server on a loopback socket bound at once, in a daemon thread.

    The port is known before the app exists (``url`` goes into the settings as the public URL, so
    that the links the server gives out point at it); :meth:`serve` starts the app on it.
    """

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = int(self.socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def serve(self, app: FastAPI) -> ServerThread:
        config = uvicorn.Config(app, log_level="warning", lifespan="off", log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        return self

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()
