"""Outbound data flow: points, their new versions and their deletions pushed to signed webhooks,
to SkyPortal and, when configured, to Hermes (a Hopskotch topic, :mod:`.hermes`).

``point.calibrated`` and ``point.deleted`` (queue ``api``) ->
:class:`~cpcs_api.outbound.dispatcher.OutboundDispatcher` writes one delivery per target (a
point's first version, an update, or its deletion) ->
:class:`~cpcs_api.outbound.dispatcher.DeliveryWorker` threads send them with retries, in order per
point and target. Webhook events: ``point.calibrated``, ``point.updated``, ``point.deleted``
(:mod:`.webhooks`); SkyPortal: PUT, then PATCH and DELETE of the row the PUT made
(:mod:`.skyportal`). :mod:`.routes` manages subscriptions, destinations and histories.
"""

from cpcs_api.outbound.dispatcher import Outbound
from cpcs_api.outbound.routes import router

__all__ = ["Outbound", "router"]
