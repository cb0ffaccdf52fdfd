"""What every consumer does first: turn an envelope into the message it handles, or reject it."""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError

from cpcs.messages import Message, decode
from cpcs.messaging.bus import Envelope, RejectMessage

M = TypeVar("M", bound=Message)


def decode_for(envelope: Envelope, consumer: str, *kinds: type[M]) -> M:
    """The envelope's message if it is one of ``kinds``; else ``RejectMessage`` (dead-lettered at once)."""
    try:
        message = decode(envelope.routing_key, envelope.body)
    except (KeyError, ValidationError) as exc:
        raise RejectMessage(f"unreadable {envelope.routing_key} message: {exc}") from exc
    if not isinstance(message, kinds):
        raise RejectMessage(f"{consumer} does not handle {envelope.routing_key}")
    return message
