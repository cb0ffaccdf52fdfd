"""Structured (JSON) logs; the observation being worked on rides along in a context variable."""

from __future__ import annotations

import contextvars
import json
import logging
import re
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


# Token-like values: ``hashtag=...`` (query strings, forms, reprs), ``"token": "..."``,
# ``Authorization: Bearer ...`` / ``Basic ...``, a bare ``Bearer ...``, and a bare CPCS token
# (43 URL-safe characters, the form ``secrets.token_urlsafe(32)`` gives, mixing cases and digits).
_SECRET_FIELD = re.compile(
    r"""(?ix)
    \b(hashtag|token|access_token|api_key|apikey|secret|password|admin_token|x-api-key)
    (["']?\s*[=:]\s*["']?)
    (?!\[redacted\])[^\s"'&,;)}\]]+
    """
)
_AUTH_HEADER = re.compile(
    r"""(?ix)
    \b(authorization["']?\s*[=:]\s*["']?)
    (?!\[redacted\])(?:(bearer|basic|token)\s+)?[^\s"',;)}\]]+
    """
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+(?!\[redacted\])[A-Za-z0-9._~+/=-]{8,}")
_BARE_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])"
    r"[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"
)
REDACTED = "[redacted]"


def _header(match: re.Match[str]) -> str:
    scheme = f"{match.group(2)} " if match.group(2) else ""
    return f"{match.group(1)}{scheme}{REDACTED}"


def redact(text: str) -> str:
    """``text`` with token-like values replaced by ``[redacted]``: no secret reaches a log line."""
    if not text:
        return text
    text = _AUTH_HEADER.sub(_header, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _SECRET_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _BARE_TOKEN.sub(REDACTED, text)


# What could start a forged line or hide text in a terminal: C0/C1 controls (line breaks
# included), the Unicode line and paragraph separators, bidi controls and zero-width characters.
_UNSAFE_IN_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def escape_line(text: str) -> str:
    """``text`` as one visible line: unsafe characters become ``\\n``, ``\\t`` or ``\\uXXXX``."""
    return _UNSAFE_IN_A_LINE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class RedactingFormatter(logging.Formatter):
    """The text format (``cpcs up``): secrets redacted, one line per record.

    The message and its fields are escaped (a value holding a line break cannot forge a record);
    a traceback that follows keeps its own lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_line(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "service": _service_name,
            "message": redact(record.getMessage()),
        }
        observation_id = getattr(record, "observation_id", None) or observation_id_var.get()
        if observation_id is not None:
            entry["observation_id"] = observation_id
        for key in ("routing_key", "message_id", "duration_ms", "status"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", *, json_format: bool = True, service: str = "cpcs") -> None:
    global _service_name
    _service_name = service
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
