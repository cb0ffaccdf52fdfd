"""Messaging: publish facts and consume them at least once (see :mod:`cpcs.messaging.bus`)."""

from cpcs.messaging.bus import (
    Bus,
    Envelope,
    Handler,
    MessagingError,
    PublishError,
    RejectMessage,
    TransientError,
    UnroutableError,
)
from cpcs.messaging.factory import create_bus

__all__ = [
    "Bus",
    "Envelope",
    "Handler",
    "MessagingError",
    "PublishError",
    "RejectMessage",
    "TransientError",
    "UnroutableError",
    "create_bus",
]
