"""Fault injection for the reliability tests.

A private RabbitMQ node and a private PostgreSQL cluster, each on spare ports and in its own folder,
so that a test can stop, restart or starve them without disturbing the machine's own servers or
another test; and helpers that kill -9, freeze or restart one service process of a
:class:`~cpcs.testing.processes.RunningSystem`.

The server binaries must be on the machine (``rabbitmq-server`` under ``/usr/lib/rabbitmq/bin``,
PostgreSQL's ``initdb``/``pg_ctl`` under ``/usr/lib/postgresql/<version>/bin``; override with
``CPCS_TEST_RABBITMQ_BIN`` / ``CPCS_TEST_PG_BIN``). When they are missing the test fails with
:class:`MissingServerBinary`, it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cpcs.testing.processes import CLI, RunningSystem, free_port, wait_ready
from cpcs.testing.servers import ServerUnavailable

RABBITMQ_BIN_DIRS = ("/usr/lib/rabbitmq/bin", "/usr/lib/rabbitmq/sbin")
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: How long a server may take to accept connections after it was started.
START_TIMEOUT_S = 60.0
HTTP_SERVICES = ("ingest", "api", "catalog-cache")


class MissingServerBinary(ServerUnavailable):
    """A server binary the fault tests need is not installed: a failure, not a skip."""


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited with {result.returncode}: {(result.stderr or result.stdout)[-2000:]}"
        )
    return result.stdout


# --- RabbitMQ -------------------------------------------------------------------------------------


def rabbitmq_bin_dir() -> Path:
    """The folder holding ``rabbitmq-server`` and ``rabbitmqctl`` (the scripts, not the sbin wrappers,
    which would switch to the ``rabbitmq`` user and ignore our folders)."""
    candidates = [os.environ.get("CPCS_TEST_RABBITMQ_BIN", ""), *RABBITMQ_BIN_DIRS]
    for candidate in filter(None, candidates):
        folder = Path(candidate)
        if (folder / "rabbitmq-server").is_file() and (folder / "rabbitmqctl").is_file():
            return folder
    raise MissingServerBinary(
        f"rabbitmq-server is not installed (looked in {', '.join(filter(None, candidates))}); "
        "install the rabbitmq-server package or set CPCS_TEST_RABBITMQ_BIN"
    )


@dataclass
class RabbitMqNode:
    """One RabbitMQ node of our own: its name, ports and folders (mnesia, logs, cookie)."""

    base: Path
    bin_dir: Path
    name: str = field(default_factory=lambda: f"cpcs-test-{uuid.uuid4().hex[:8]}@localhost")
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    #: how many times the node was started (1 after the first start)
    starts: int = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def log_file(self) -> Path:
        return self.base / "server.out"

    def _prepare(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "disk_free_limit.absolute = 10MB\n"
            "log.console = true\n"
            "log.console.level = warning\n"
        )

    def env(self) -> dict[str, str]:
        """The environment of the server and of ``rabbitmqctl``: everything points into ``base``.

        ``HOME`` is ``base`` too, so the node and its control tool share a private Erlang cookie.
        """
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {
            **inherited,
            "HOME": str(self.base),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the node (same name, ports and mnesia folder as before) and wait until AMQP answers."""
        if self.running:
            raise RuntimeError(f"RabbitMQ node {self.name} is already running")
        self._prepare()
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "rabbitmq-server")],
                env=self.env(),
                cwd=self.base,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        self._wait_for_amqp(timeout_s)

    def _wait_for_amqp(self, timeout_s: float) -> None:
        import logging

        import pika
        import pika.exceptions

        parameters = pika.URLParameters(f"{self.url}?connection_attempts=1&socket_timeout=2")
        pika_log = logging.getLogger("pika")
        level = pika_log.level
        pika_log.setLevel(logging.CRITICAL)  # refused connections are expected while the node boots
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"RabbitMQ node {self.name} exited with {self.process.returncode}:\n"
                        f"{_tail(self.log_file)}"
                    )
                try:
                    connection = pika.BlockingConnection(parameters)
                except (pika.exceptions.AMQPError, OSError):
                    time.sleep(0.2)
                    continue
                connection.close()
                return
        finally:
            pika_log.setLevel(level)
        raise TimeoutError(f"RabbitMQ node {self.name} did not answer within {timeout_s} s")

    def ctl(self, *args: str, timeout_s: float = 60) -> str:
        """``rabbitmqctl -n NODE ARGS...`` against this node; returns its standard output."""
        return _run(
            [str(self.bin_dir / "rabbitmqctl"), "-n", self.name, *args], env=self.env(), timeout=timeout_s
        )

    def stop(self) -> None:
        """A clean shutdown (``rabbitmqctl stop``): durable queues and persistent messages are kept."""
        if not self.running:
            return
        try:
            self.ctl("stop", timeout_s=60)
            assert self.process is not None
            self.process.wait(timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            self.kill()

    def kill(self) -> None:
        """SIGKILL the node's process group (cleanup of last resort; only while our process lives, so a
        recycled process id is never hit)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same mnesia folder."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def ready(self, queue: str) -> int:
        """Messages waiting (not yet delivered) in ``queue``, read through AMQP (quicker than rabbitmqctl)."""
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
        finally:
            connection.close()

    def queue_depths(self) -> dict[str, int]:
        """Messages (ready + unacknowledged) per queue of the default virtual host."""
        out = self.ctl("list_queues", "-q", "--formatter", "json", "name", "messages")
        return {row["name"]: int(row["messages"]) for row in json.loads(out or "[]")}


@contextlib.contextmanager
def private_rabbitmq(base: Path | None = None) -> Iterator[RabbitMqNode]:
    """A RabbitMQ node of our own on spare ports, started; stopped (and its folder kept) at exit."""
    bin_dir = rabbitmq_bin_dir()
    owned = base is None
    folder = Path(tempfile.mkdtemp(prefix="cpcs-rabbitmq-")) if base is None else base
    node = RabbitMqNode(folder, bin_dir)
    try:
        node.start()
        yield node
    finally:
        node.stop()
        if owned:
            shutil.rmtree(folder, ignore_errors=True)


# --- PostgreSQL -----------------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl`` (the newest installed major version)."""
    override = os.environ.get("CPCS_TEST_PG_BIN")
    candidates = [Path(override)] if override else []

    def major(path: Path) -> int:
        version = path.parent.name
        return int(version) if version.isdigit() else 0

    candidates += sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")), key=major, reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise MissingServerBinary(
        f"PostgreSQL's initdb and pg_ctl are not installed (looked in {override or POSTGRES_BIN_GLOB}); "
        "install the postgresql package or set CPCS_TEST_PG_BIN"
    )


def _run_as_postgres() -> tuple[list[str], int | None, int | None]:
    """``initdb`` refuses root: as root, run the server tools as the ``postgres`` user."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise MissingServerBinary(
            "running as root, but there is no 'postgres' user to run PostgreSQL as"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise MissingServerBinary("running as root, but 'runuser' is missing (util-linux)")
    return [runuser, "-u", "postgres", "--"], account.pw_uid, account.pw_gid


@dataclass
class PostgresCluster:
    """One PostgreSQL cluster of our own: data folder, socket folder and port; trust authentication."""

    base: Path
    bin_dir: Path
    port: int = field(default_factory=free_port)
    prefix: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _tool(self, name: str, *args: str, timeout_s: float = 120) -> str:
        return _run([*self.prefix, str(self.bin_dir / name), *args], timeout=timeout_s)

    def init(self) -> None:
        self._tool(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"
        )

    @property
    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        try:
            self._tool(
                "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
                "-w", "-t", str(int(timeout_s)), "start",
            )  # fmt: skip
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{_tail(self.log_file)}") from None

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast`` (clients are disconnected) or ``immediate`` (as a crash would)."""
        if self.running:
            self._tool("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its SQLAlchemy URL."""
        import psycopg

        admin = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def private_postgres(keep_log_in: Path | None = None) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of our own on a spare port, started; stopped and deleted at exit.

    Its folder lives under the system temporary folder (the ``postgres`` user must reach it when
    we run as root); ``keep_log_in`` receives a copy of the server log at exit.
    """
    bin_dir = postgres_bin_dir()
    prefix, uid, gid = _run_as_postgres()
    folder = Path(tempfile.mkdtemp(prefix="cpcs-pg-"))
    if uid is not None and gid is not None:
        os.chown(folder, uid, gid)
    cluster = PostgresCluster(folder, bin_dir, prefix=prefix)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            cluster.stop("immediate")
        if keep_log_in is not None and cluster.log_file.exists():
            keep_log_in.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cluster.log_file, keep_log_in / "postgresql.log")
        shutil.rmtree(folder, ignore_errors=True)


# --- service processes ----------------------------------------------------------------------------


def service_of(process_name: str) -> str:
    """``calibrate-1`` -> ``calibrate``; other names are the service itself."""
    base, _, index = process_name.rpartition("-")
    return base if base and index.isdigit() else process_name


def kill_service(system: RunningSystem, name: str) -> int:
    """``kill -9`` the process ``name`` (e.g. ``calibrate-0``) of ``system``; returns its pid."""
    process = system.processes[name]
    if process.poll() is not None:
        raise RuntimeError(f"{name} had already exited with {process.returncode}")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    return process.pid


def restart_service(system: RunningSystem, name: str, timeout_s: float = 60) -> subprocess.Popen[bytes]:
    """Start process ``name`` again as before (same command, environment and log), after a crash.

    An HTTP service gets its old port back and is waited for until ready.
    """
    old = system.processes[name]
    if old.poll() is None:
        raise RuntimeError(f"{name} is still running (pid {old.pid}); kill or stop it first")
    service = service_of(name)
    env = dict(system.env)
    url = {
        "ingest": system.ingest_url,
        "api": system.api_url,
        "catalog-cache": system.env.get("CPCS_CATALOG_CACHE_URL", ""),
    }.get(service)
    if url:
        env["CPCS_PORT"] = url.rsplit(":", 1)[1]
    assert system.logs is not None
    with (system.logs / f"{service}.log").open("ab") as log:
        process = subprocess.Popen(
            [*CLI, "service", "run", service], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    system.processes[name] = process
    if url:
        wait_ready(url, [process], timeout_s)
    return process


@contextlib.contextmanager
def frozen(system: RunningSystem, *names: str) -> Iterator[None]:
    """SIGSTOP the named processes for the duration of the block (SIGCONT afterwards, always)."""
    processes = [system.processes[name] for name in names]
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
