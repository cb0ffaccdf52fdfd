"""Fixtures' helpers for tests that talk to the machine's real PostgreSQL and RabbitMQ.

An unreachable server makes the test fail (never skip), with how to start it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

POSTGRES_HOST = os.environ.get("CPCS_TEST_PG_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("CPCS_TEST_PG_PORT", "5432"))
POSTGRES_USER = os.environ.get("CPCS_TEST_PG_USER", "postgres")
RABBITMQ_URL = os.environ.get("CPCS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


class ServerUnavailable(AssertionError):
    """A real server the test needs is not reachable: a failure, not a skip."""


def require_port(host: str, port: int, what: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exc:
        raise ServerUnavailable(
            f"{what} is not reachable on {host}:{port} ({exc}); start it with 'make services'"
        ) from exc


def require_rabbitmq() -> str:
    require_port("127.0.0.1", 5672, "RabbitMQ")
    return RABBITMQ_URL


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def temporary_rabbitmq_vhost() -> Iterator[str]:
    """A fresh RabbitMQ virtual host for one test (its queues cannot clash with anyone's). Yields its URL."""
    require_rabbitmq()
    vhost = f"cpcs-test-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards. Yields its URL."""
    import psycopg

    require_port(POSTGRES_HOST, POSTGRES_PORT, "PostgreSQL")
    name = f"cpcs_test_{uuid.uuid4().hex[:12]}"
    admin = f"host={POSTGRES_HOST} port={POSTGRES_PORT} user={POSTGRES_USER} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
