"""Whether an error means a dependency (the database) is away for now, rather than a bug.

HTTP services answer such errors 503 + Retry-After (see ``cpcs.web``); message consumers wait and
retry them without spending the message's retry budget (see ``cpcs.messaging.bus.run_handler``).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import exc as sqlalchemy_exc


class DependencyUnavailable(Exception):
    """Raised by a handler that cannot reach something it needs now; retried without counting."""


_UNAVAILABLE_SQLALCHEMY = (
    sqlalchemy_exc.OperationalError,  # connection refused or lost, server shutting down, SQLite locked
    sqlalchemy_exc.InterfaceError,  # the driver's connection is closed
    sqlalchemy_exc.DisconnectionError,
    sqlalchemy_exc.TimeoutError,  # the pool had no connection to give in time
)


def _driver_unavailable_errors() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return ()
    return (psycopg.OperationalError, psycopg.InterfaceError)


UNAVAILABLE_DRIVER_ERRORS = _driver_unavailable_errors()


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it was raised from or during, and the members of exception groups."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def database_unavailable(exc: BaseException) -> bool:
    """Whether an error means the database cannot be reached now (503), not a bug (500)."""
    for error in causes(exc):
        if isinstance(error, _UNAVAILABLE_SQLALCHEMY + UNAVAILABLE_DRIVER_ERRORS):
            return True
        if isinstance(error, sqlalchemy_exc.DBAPIError) and error.connection_invalidated:
            return True
    return False


def dependency_unavailable(exc: BaseException) -> bool:
    """Whether a handler's failure is an outage (database away, or said so): not the message's fault."""
    return database_unavailable(exc) or any(isinstance(e, DependencyUnavailable) for e in causes(exc))
