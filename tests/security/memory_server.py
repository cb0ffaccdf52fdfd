"""The embedded system served by uvicorn in its own process, for tests that watch its memory.

``python -m tests.security.memory_server DATA_DIR`` prints one JSON line (port, pid, observer token)
once it serves, then runs until killed.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import uvicorn

from cpcs.settings import Settings
from tests.conftest import start_system


def main(data_dir: Path) -> None:
    system = start_system(Settings(data_dir=data_dir, retry_base_s=0.05, outbox_poll_s=0.05, legacy_wait_s=5))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    assert system.assembly.app is not None
    server = uvicorn.Server(uvicorn.Config(system.assembly.app, log_level="warning", lifespan="off"))
    print(json.dumps({"port": port, "token": system.observer_token}), flush=True)
    server.run(sockets=[listener])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
