"""Run CPCS as real processes for end-to-end tests and benchmarks.

``embedded_process`` is ``cpcs up`` on a data folder; ``distributed_processes`` runs every service
as its own ``cpcs service run NAME`` process on a PostgreSQL database and a RabbitMQ exchange.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cpcs.db.secret_box import new_key

CLI = [sys.executable, "-m", "cpcs_system.cli"]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free TCP port on 127.0.0.1 *below* the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` comes from the same range as the local ports of
    outgoing connections; on a busy machine one of those can take it between the moment it is
    chosen and the moment the server binds it (or while a server we stopped is down, before we
    start it again on the same port). Ports below the range are never handed out that way.
    """
    low, _ = _ephemeral_range()
    first = 10000 if low > 12000 else 1024
    for _ in range(200):
        port = random.randrange(first, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port found between {first} and {low}")


def wait_ready(url: str, processes: list[subprocess.Popen[bytes]], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} was not ready within {timeout_s} s")


def run_cli(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"cpcs {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result.stdout


@dataclass
class RunningSystem:
    """Where the HTTP services listen, and the environment that configures every process."""

    env: dict[str, str]
    ingest_url: str
    api_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: Path | None = None
    #: /metrics of the worker processes (calibrate-0..., reduce); the HTTP services answer it themselves.
    worker_metrics_urls: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> str:
        return run_cli(list(args), self.env)


def _stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    for process in processes.values():
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen([*CLI, *args], env=env, stdout=handle, stderr=subprocess.STDOUT)


@contextmanager
def embedded_process(data_dir: Path, *, extra_env: dict[str, str] | None = None) -> Iterator[RunningSystem]:
    """``cpcs up`` on ``data_dir`` (SQLite, in-process bus)."""
    port = free_port()
    env = {**os.environ, "CPCS_DATA_DIR": str(data_dir), "CPCS_PORT": str(port), **(extra_env or {})}
    for key in ("CPCS_DATABASE_URL", "CPCS_BROKER_URL", "CPCS_CATALOG_CACHE_URL"):
        env.pop(key, None)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "cpcs-up.log"
    process = _spawn(["up"], env, log)
    url = f"http://127.0.0.1:{port}"
    system = RunningSystem(env, url, url, {"cpcs": process}, log)
    try:
        wait_ready(url, [process])
        yield system
    finally:
        _stop(system.processes)


@contextmanager
def distributed_processes(
    data_dir: Path, database_url: str, broker_url: str, *, calibrate_workers: int = 1
) -> Iterator[RunningSystem]:
    """Every service as its own process, on PostgreSQL and RabbitMQ, configured as an operator without
    a gateway would: the api's URL is the public one (status URLs, links), ingest's is where uploads go."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("ingest", "api", "catalog-cache")}
    env = {
        **os.environ,
        "CPCS_DATA_DIR": str(data_dir),
        "CPCS_DATABASE_URL": database_url,
        "CPCS_BROKER_URL": broker_url,
        "CPCS_CATALOG_CACHE_URL": f"http://127.0.0.1:{ports['catalog-cache']}",
        "CPCS_PUBLIC_URL": f"http://127.0.0.1:{ports['api']}/",
        "CPCS_INGEST_PUBLIC_URL": f"http://127.0.0.1:{ports['ingest']}/",
    }
    env.setdefault("CPCS_SECRET_KEY", new_key())  # one key for every process, as a deployment has
    run_cli(["db", "upgrade"], env)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, port in ports.items():
            processes[name] = _spawn(
                ["service", "run", name], {**env, "CPCS_PORT": str(port)}, data_dir / f"{name}.log"
            )
        workers = {f"calibrate-{index}": "calibrate" for index in range(calibrate_workers)} | {
            "reduce": "reduce"
        }
        metrics_ports = {name: free_port() for name in workers}
        for name, service in workers.items():
            processes[name] = _spawn(
                ["service", "run", service],
                {**env, "CPCS_METRICS_PORT": str(metrics_ports[name])},
                data_dir / f"{service}.log",
            )
        procs = list(processes.values())
        for port in ports.values():
            wait_ready(f"http://127.0.0.1:{port}", procs)
        yield RunningSystem(
            env,
            f"http://127.0.0.1:{ports['ingest']}",
            f"http://127.0.0.1:{ports['api']}",
            processes,
            data_dir,
            {name: f"http://127.0.0.1:{port}/metrics" for name, port in metrics_ports.items()},
        )
    finally:
        _stop(processes)
