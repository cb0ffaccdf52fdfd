"""Structured (JSON) logs; the observation being worked on rides along in a context variable."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

observation_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "observation_id", default=None
)
_service_name = "cpcs"


@contextmanager
def observation_context(observation_id: int | None) -> Iterator[None]:
    token = observation_id_var.set(observation_id)
    try:
        yield
    finally:
        observation_id_var.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "service": _service_name,
            "message": record.getMessage(),
        }
        observation_id = getattr(record, "observation_id", None) or observation_id_var.get()
        if observation_id is not None:
            entry["observation_id"] = observation_id
        for key in ("routing_key", "message_id", "duration_ms", "status"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", *, json_format: bool = True, service: str = "cpcs") -> None:
    global _service_name
    _service_name = service
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
