"""The composition root: which parts each service runs, and the embedded all-in-one system.

Service packages are imported here lazily, so the library itself never depends on them.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from cpcs import metrics, tracing
from cpcs.context import Context
from cpcs.housekeeping import Housekeeper
from cpcs.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from cpcs.catalogs.client import ReferenceSource
    from cpcs.catalogs.cone import ConeService
    from cpcs_api.outbound import Outbound

log = logging.getLogger(__name__)

SERVICE_NAMES = ("ingest", "reduce", "calibrate", "catalog-cache", "api")


@dataclass
class Assembly:
    """The parts a process runs: an optional HTTP app and any number of consumers."""

    context: Context
    app: FastAPI | None = None
    consumers: list[Callable[[], None]] = field(default_factory=list)
    background: list[tuple[Callable[[], None], Callable[[], None]]] = field(default_factory=list)
    #: The api's outbound flow (its delivery senders), when this process runs the api.
    outbound: Outbound | None = None

    def start_background(self) -> None:
        """Subscribe the consumers, start the bus and the outbox relay, then the background threads."""
        for subscribe in self.consumers:
            subscribe()
        self.context.bus.start()
        self.context.start_relay()
        for start, _ in self.background:
            start()

    def stop(self) -> None:
        for _, stop in reversed(self.background):
            stop()
        self.context.close()


def _api_side(
    context: Context,
) -> tuple[Outbound, list[Callable[[], None]], list[tuple[Callable[[], None], Callable[[], None]]]]:
    """What the api service runs besides HTTP: the outbound consumer and its senders, housekeeping."""
    from cpcs_api.outbound import Outbound

    _check_secret_keys(context)
    outbound = Outbound(context)
    housekeeper = Housekeeper(context)
    background = [(outbound.start, outbound.stop), (housekeeper.start, housekeeper.stop)]
    return outbound, outbound.consumers(), background


def _check_secret_keys(context: Context) -> None:
    """The api uses the stored secrets: a missing or malformed key stops it now (SecretKeyError),
    and stored secrets that the keys do not decrypt are named in the log."""
    from cpcs.db.stored_secrets import unreadable_secrets

    context.secret_box  # noqa: B018  (resolves the keys, or raises)
    try:
        unreadable = unreadable_secrets(context.db)
    except SQLAlchemyError as exc:  # the database may be away at start: the readiness check says so
        log.warning("stored secrets not checked: %s", type(exc).__name__)
        return
    if unreadable:
        log.error(
            "%d stored secrets cannot be decrypted with the configured keys (%s): their deliveries "
            "fail until CPCS_SECRET_KEY also holds the key they were written with, or they are given "
            "again",
            len(unreadable),
            ", ".join(unreadable[:20]),
        )


def _references(context: Context, cones: ConeService | None) -> ReferenceSource:
    from cpcs.catalogs.client import HttpReferences, LocalReferences

    if context.settings.catalog_cache_url:
        return HttpReferences(context.settings.catalog_cache_url)
    if cones is None:
        from cpcs_catalog_cache.app import cone_service

        cones = cone_service(context)
    return LocalReferences(cones)


def assemble_service(name: str, context: Context) -> Assembly:
    """One service as its own process (the distributed mode)."""
    if name == "ingest":
        from cpcs_ingest.app import create_app as ingest_app

        return Assembly(context, app=ingest_app(context))
    if name == "api":
        from cpcs_api.app import create_app as api_app

        outbound, consumers, background = _api_side(context)
        return Assembly(
            context, app=api_app(context), consumers=consumers, background=background, outbound=outbound
        )
    if name == "catalog-cache":
        from cpcs_catalog_cache.app import cone_service
        from cpcs_catalog_cache.app import create_app as cache_app
        from cpcs_catalog_cache.consumer import PrefetchWorker

        cones = cone_service(context)
        return Assembly(
            context, app=cache_app(context, cones), consumers=[PrefetchWorker(context, cones).subscribe]
        )
    if name == "calibrate":
        from cpcs_calibrate.worker import CalibrateWorker

        worker = CalibrateWorker(context, _references(context, None))
        return Assembly(context, consumers=[worker.subscribe])
    if name == "reduce":
        from cpcs_reduce.worker import ReduceWorker

        return Assembly(context, consumers=[ReduceWorker(context, _references(context, None)).subscribe])
    raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICE_NAMES)}")


def assemble_embedded(context: Context) -> Assembly:
    """Every service in one process: one HTTP app, every consumer on the shared bus."""
    from cpcs.web import make_app
    from cpcs_api.app import routers as api_routers
    from cpcs_calibrate.worker import CalibrateWorker
    from cpcs_catalog_cache.app import cone_service
    from cpcs_catalog_cache.app import router as cache_router
    from cpcs_catalog_cache.consumer import PrefetchWorker
    from cpcs_ingest.app import routers as ingest_routers
    from cpcs_reduce.worker import ReduceWorker

    cones = cone_service(context)
    app = make_app(
        context,
        title="CPCS",
        description="Photometric calibration server for transient follow-up (all services in one process).",
        routers=[*ingest_routers(), *api_routers(), cache_router(cones)],
    )
    references = _references(context, cones)
    consumers = [
        CalibrateWorker(context, references).subscribe,
        PrefetchWorker(context, cones).subscribe,
        ReduceWorker(context, references).subscribe,
    ]
    outbound, api_consumers, background = _api_side(context)
    return Assembly(
        context, app=app, consumers=[*consumers, *api_consumers], background=background, outbound=outbound
    )


def http_server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for every service (what each layer enforces: ``cpcs.security``).

    Slow clients are cut off; X-Forwarded-For is read only from the configured proxies (uvicorn
    would otherwise trust 127.0.0.1, and anyone on the machine could name any client).
    """
    from cpcs.security import header_timeout_protocol

    proxies = settings.trusted_proxy_list
    return {
        "log_config": None,
        "http": header_timeout_protocol(settings.http_header_timeout_s),
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "timeout_keep_alive": settings.http_keep_alive_s,
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": list(proxies),
        "server_header": False,
    }


def serve(assembly: Assembly, settings: Settings) -> None:
    """Run until SIGINT/SIGTERM: the consumers in the background and, if any, the HTTP app."""
    assembly.start_background()
    try:
        if assembly.app is not None:
            import uvicorn

            uvicorn.run(assembly.app, host=settings.host, port=settings.port, **http_server_options(settings))
        else:
            if settings.metrics_port is not None:
                metrics.start_metrics_server(settings.host, settings.metrics_port)
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
    finally:
        assembly.stop()
        tracing.shutdown()  # the spans still buffered are exported
