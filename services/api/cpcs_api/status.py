"""The operators' status (admin only): figures of the last hour and day from the database, the
queues, the dead letters and their replay, recent failures. The web page ``/admin/status`` reads it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, Field

from cpcs.domain import status
from cpcs.errors import NotFoundError
from cpcs.schemas import ErrorBody
from cpcs.web import ERROR_RESPONSES, AdminDep, ContextDep, SessionDep


class ReplayRequest(BaseModel):
    message_ids: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=1000, description="The dead letters to replay (default: all of the queue)"
    )


class Replayed(BaseModel):
    queue: str
    replayed: int


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1/admin", tags=["operations"])

    @api.get(
        "/status",
        summary="Operations status (admin): figures, queues, dead letters",
        responses=ERROR_RESPONSES,
    )
    def operations_status(context: ContextDep, session: SessionDep, admin: AdminDep) -> dict[str, Any]:
        del admin
        return {
            "windows": [
                _plain(status.window_figures(session, label, span)) for label, span in status.WINDOWS
            ],
            "queues": _plain(status.queue_depths(context)),
            "outbox": _plain(status.outbox_backlog(context.db)),
            "dead_letters": _plain(status.dead_letters(context)),
            "recent_failures": _plain(status.recent_failures(session)),
        }

    @api.post(
        "/dead-letters/{queue}/replay",
        response_model=Replayed,
        summary="Put a queue's dead letters back on it (admin)",
        responses={
            **ERROR_RESPONSES,
            400: {"model": ErrorBody, "description": "The body cannot be read as JSON text"},
        },
    )
    def replay_dead_letters(
        context: ContextDep,
        admin: AdminDep,
        queue: Annotated[str, Path(max_length=100)],
        request: Annotated[ReplayRequest | None, Body()] = None,
    ) -> Replayed:
        del admin
        if queue not in status.consumer_queue_names(context):
            names = ", ".join(status.consumer_queue_names(context))
            raise NotFoundError(f"No consumer queue {queue!r}; the queues are {names}.", code="unknown_queue")
        wanted = request.message_ids if request is not None else None
        return Replayed(queue=queue, replayed=context.bus.replay_dead_letters(queue, wanted))

    return api
