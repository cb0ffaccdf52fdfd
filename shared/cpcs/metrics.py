"""Prometheus metrics: every metric CPCS exports, declared once, and the one-line hooks that feed them.

The metrics live in the process's default registry, so the embedded process (``cpcs up``) exposes
everything on one ``/metrics``, and each service of the distributed mode exposes its own. What is
read at scrape time (outbox backlog, queue depths, database and broker availability) comes from the
process's live :class:`~cpcs.context.Context` through :class:`ScrapeTimeCollector`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException

from cpcs.errors import CpcsError

if TYPE_CHECKING:
    from cpcs.context import Context

log = logging.getLogger(__name__)

#: Seconds, from a fraction of a second (a cached catalogue) to an hour (a queue backed up).
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
_STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

UPLOADS_ACCEPTED = Counter(
    "cpcs_uploads_accepted", "Uploads accepted at the door, by door (v1, legacy)", ["door"]
)
UPLOADS_REFUSED = Counter(
    "cpcs_uploads_refused", "Uploads refused at the door, by door and error code", ["door", "code"]
)
OBSERVATIONS_FINISHED = Counter(
    "cpcs_observations_finished",
    "Observations that reached a final status (calibrated, failed, error), by failure code",
    ["status", "code"],
)
UPLOAD_TO_POINT_SECONDS = Histogram(
    "cpcs_upload_to_point_seconds",
    "Time from an upload's acceptance to its first calibrated point",
    buckets=_LATENCY_BUCKETS,
)
MESSAGES_HANDLED = Counter(
    "cpcs_messages_handled",
    "Messages handled by the consumers, by queue and outcome (ack, retry = redelivered later, dead)",
    ["queue", "outcome"],
)
MESSAGE_HANDLING_SECONDS = Histogram(
    "cpcs_message_handling_seconds",
    "Time a consumer spent on one delivery (the pipeline stage of that queue)",
    ["queue"],
    buckets=_STAGE_BUCKETS,
)
REDUCE_STAGE_SECONDS = Histogram(
    "cpcs_reduce_stage_seconds",
    "Time of each image-reduction step (as recorded in the reduction record)",
    ["stage"],
    buckets=_STAGE_BUCKETS,
)
CONE_LOOKUPS = Counter(
    "cpcs_catalogue_cone_lookups",
    "Reference-star cones per survey: hit = stars from the tile cache with no tile missing, else miss",
    ["survey", "result"],
)
CATALOGUE_FETCH_SECONDS = Histogram(
    "cpcs_catalogue_fetch_seconds",
    "Time to fetch missing tiles of a survey from the online source",
    ["survey"],
    buckets=_STAGE_BUCKETS,
)
DELIVERIES = Counter(
    "cpcs_outbound_deliveries",
    "Outbound delivery attempts by destination kind and result (delivered, pending = retried, failed)",
    ["kind", "result"],
)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _seconds_since(moment: dt.datetime) -> float:
    return max(0.0, (dt.datetime.now(dt.UTC) - _aware(moment)).total_seconds())


# --- hooks (one call at each site) ---------------------------------------------------------------


def upload_accepted(door: str) -> None:
    UPLOADS_ACCEPTED.labels(door).inc()


def upload_refused(door: str, code: str) -> None:
    UPLOADS_REFUSED.labels(door, code).inc()


def observation_finished(status: str, code: str | None, uploaded_at: dt.datetime | None = None) -> None:
    """An observation ended ``status``; ``uploaded_at`` (first calibrations only) feeds the latency."""
    OBSERVATIONS_FINISHED.labels(status, code or "").inc()
    if status == "calibrated" and uploaded_at is not None:
        UPLOAD_TO_POINT_SECONDS.observe(_seconds_since(uploaded_at))


def message_handled(queue: str, outcome: str, seconds: float) -> None:
    MESSAGES_HANDLED.labels(queue, outcome).inc()
    MESSAGE_HANDLING_SECONDS.labels(queue).observe(seconds)


def reduction_timed(timings_ms: Mapping[str, float]) -> None:
    for stage, milliseconds in timings_ms.items():
        REDUCE_STAGE_SECONDS.labels(stage).observe(float(milliseconds) / 1e3)


def cone_looked_up(survey: str, *, cached: bool) -> None:
    CONE_LOOKUPS.labels(survey, "hit" if cached else "miss").inc()


@contextmanager
def catalogue_fetch(survey: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        CATALOGUE_FETCH_SECONDS.labels(survey).observe(time.perf_counter() - started)


def delivery_attempted(kind: str, result: str) -> None:
    DELIVERIES.labels(kind, result).inc()


def upload_route(door: str) -> type[APIRoute]:
    """The route class of an upload endpoint: counts what it accepts and what it refuses, by code.

    Everything the route refuses is counted (the token, the form, the file); what the outer door's
    limits (``cpcs.security``: body size, time) refuse before the route runs is counted there, under
    the route's ``door`` (:func:`upload_door`).
    """

    class CountedUploadRoute(APIRoute):
        metrics_door = door

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def counted(request: Request) -> Response:
                try:
                    response = await handle(request)
                except CpcsError as exc:
                    upload_refused(door, exc.code)
                    raise
                except RequestValidationError:
                    upload_refused(door, "invalid_request")
                    raise
                except HTTPException as exc:
                    upload_refused(door, f"http_{exc.status_code}")
                    raise
                upload_accepted(door)  # a legacy answer of a failed calibration is still an upload
                return response

            return counted

    return CountedUploadRoute


def upload_door(route: object) -> str | None:
    """The door an upload route counts under (``None`` for a route that is not a counted upload)."""
    door = getattr(route, "metrics_door", None)
    return door if isinstance(door, str) else None


# --- read at scrape time -------------------------------------------------------------------------


class ScrapeTimeCollector(Collector):
    """Outbox backlog and age, queue depths, database and broker availability of the live context."""

    def __init__(self) -> None:
        self._contexts: list[weakref.ref[Context]] = []
        self._lock = threading.Lock()

    def watch(self, context: Context) -> None:
        with self._lock:
            self._contexts.append(weakref.ref(context))

    def forget(self, context: Context) -> None:
        with self._lock:
            self._contexts = [ref for ref in self._contexts if ref() not in (None, context)]

    def current(self) -> Context | None:
        """The most recently built context still open (a process has one; tests build many)."""
        with self._lock:
            for ref in reversed(self._contexts):
                context = ref()
                if context is not None:
                    return context
        return None

    def describe(self) -> Iterable[Metric]:
        return []  # collected only at scrape time: nothing to check for name clashes at registration

    def collect(self) -> Iterable[Metric]:
        context = self.current()
        if context is None:
            return []
        from cpcs.domain.status import outbox_backlog, queue_depths

        up = GaugeMetricFamily(
            "cpcs_dependency_up", "Whether a dependency answers the readiness check", labels=["dependency"]
        )
        checks = context.readiness()
        for dependency, ok in checks.items():
            up.add_metric([dependency], 1.0 if ok else 0.0)
        metrics: list[Metric] = [up]
        if checks["database"]:
            backlog = outbox_backlog(context.db)
            metrics.append(
                GaugeMetricFamily("cpcs_outbox_backlog", "Outbox rows not yet published", value=backlog.count)
            )
            metrics.append(
                GaugeMetricFamily(
                    "cpcs_outbox_oldest_age_seconds",
                    "Age of the oldest unpublished outbox row (0 when none)",
                    value=backlog.oldest_age_s,
                )
            )
        depth = GaugeMetricFamily(
            "cpcs_queue_messages", "Messages in each queue (ready, retrying, dead)", labels=["queue", "part"]
        )
        for row in queue_depths(context):
            for part, value in (("ready", row.ready), ("retrying", row.retrying), ("dead", row.dead)):
                if value is not None:
                    depth.add_metric([row.queue, part], float(value))
        metrics.append(depth)
        return metrics


SCRAPE_TIME = ScrapeTimeCollector()
REGISTRY.register(SCRAPE_TIME)


def watch(context: Context) -> None:
    """Let ``/metrics`` read this context's database and bus at scrape time."""
    SCRAPE_TIME.watch(context)


def forget(context: Context) -> None:
    SCRAPE_TIME.forget(context)


def exposition() -> tuple[bytes, str]:
    """The text ``/metrics`` answers and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def start_metrics_server(host: str, port: int) -> None:
    """``/metrics`` for a process without an HTTP app (the calibrate and reduce workers)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
