"""Recorded answers of online services, played by a :class:`LocalServer` on 127.0.0.1: the
boundary the online clients are tested at (astroquery's SkyBoT and hips2fits requests go over a
real socket to it, nowhere else)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cpcs.testing.local_http import LocalServer

__all__ = ["RecordedAnswer", "RecordedServer", "recorded_http"]


@dataclass(frozen=True)
class RecordedAnswer:
    body: bytes
    content_type: str = "application/octet-stream"
    status: int = 200
    delay_s: float = 0.0  # wait this long before answering (a slow or hung service)


@dataclass
class RecordedServer:
    url: str
    #: Every request seen: (path, query parameters, the last value of each).
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@contextmanager
def recorded_http(answers: dict[str, RecordedAnswer]) -> Iterator[RecordedServer]:
    """Serve ``answers`` by path (``"/skybot"``); any other path is a 404."""
    served = RecordedServer(url="")

    async def play(request: Request) -> Response:
        served.requests.append((request.url.path, dict(request.query_params)))
        answer = answers.get(request.url.path, RecordedAnswer(b"not recorded", "text/plain", 404))
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    app = Starlette(routes=[Route("/{path:path}", play, methods=["GET"])])
    with LocalServer(app) as server:
        served.url = server.url
        yield served
