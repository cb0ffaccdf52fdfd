"""Outbound data flow: calibrated points pushed to signed webhooks and to SkyPortal.

``point.calibrated`` (queue ``api``) -> :class:`~cpcs_api.outbound.dispatcher.OutboundDispatcher`
writes one delivery per matching target -> :class:`~cpcs_api.outbound.dispatcher.DeliveryWorker`
threads send them with retries. :mod:`.routes` manages subscriptions, destinations and histories.
"""

from cpcs_api.outbound.dispatcher import (
    Outbound,
    OutboundSettings,
    outbound_consumers,
    outbound_for,
    start_delivery_worker,
    stop_delivery_worker,
)
from cpcs_api.outbound.routes import router

__all__ = [
    "Outbound",
    "OutboundSettings",
    "outbound_consumers",
    "outbound_for",
    "router",
    "start_delivery_worker",
    "stop_delivery_worker",
]
