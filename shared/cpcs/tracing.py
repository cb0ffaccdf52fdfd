"""OpenTelemetry traces of an upload across the services; off unless an exporter is configured.

``CPCS_OTEL_EXPORTER`` chooses where spans go: ``none``, ``otlp`` (OTLP over HTTP, to the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``), ``console`` (JSON on
stdout) or ``file:PATH`` (one JSON span a line; ``{service}`` and ``{pid}`` in PATH are filled in, so
that each process writes its own file). Unset: ``otlp`` when one of those standard endpoints is set,
else ``none``. Off, no provider exists and every hook here returns after one check.

One trace follows an upload: the HTTP request that accepted it (a server span,
:class:`TracingMiddleware`), each outbox row (which keeps the W3C context of the span that wrote it,
:func:`message_carrier`), the relay's publish (:func:`publishing`, a producer span whose context
travels in the message headers), each consumer's work (:func:`consuming`, a consumer span, child of
the publish), reduce's recorded stage timings (:func:`record_stages`) and the HTTP calls a consumer
makes to catalog-cache (:func:`outgoing_headers`). The observation and alert ids ride in W3C baggage
and are set on every span (``cpcs.observation_id``, ``cpcs.alert_id``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context as TraceContext
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cpcs.errors import CpcsError
from cpcs.logs import observation_id_var
from cpcs.messaging.bus import UnroutableError
from cpcs.settings import Settings

log = logging.getLogger(__name__)

OBSERVATION_ID = "cpcs.observation_id"
ALERT_ID = "cpcs.alert_id"
IDS = (OBSERVATION_ID, ALERT_ID)
#: The headers that carry a trace (W3C Trace Context and Baggage).
CONTEXT_HEADERS = ("traceparent", "tracestate", "baggage")
#: Probes and scrapes, asked every few seconds, are not traced.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Standard variables naming an OTLP endpoint; either one switches the default exporter to ``otlp``.
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()


# --- set-up --------------------------------------------------------------------------------------


def exporter_choice(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    """The exporter a process uses: the setting, else ``otlp`` if a standard endpoint is set."""
    if settings.otel_exporter is not None:
        return settings.otel_exporter
    return "otlp" if any(environ.get(name) for name in OTLP_ENDPOINT_VARIABLES) else "none"


class _JsonLinesExporter(ConsoleSpanExporter):
    """The SDK's console exporter writing one compact JSON span a line to a file of its own."""

    def __init__(self, stream: IO[str]):
        super().__init__(out=stream, formatter=lambda span: span.to_json(indent=None) + "\n")
        self._stream = stream

    def shutdown(self) -> None:
        super().shutdown()
        self._stream.close()


def span_file(path: str, service: str) -> Path:
    """``file:PATH``'s file for this process (``{service}``, ``{pid}`` filled in)."""
    return Path(path.format(service=service, pid=os.getpid()))


def new_exporter(choice: str, service: str) -> SpanExporter | None:
    """The exporter ``choice`` names (a value of ``CPCS_OTEL_EXPORTER``); None for ``none``."""
    if choice == "none":
        return None
    if choice == "console":
        return ConsoleSpanExporter()
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout: the standard OTEL_EXPORTER_OTLP_* variables
    target = span_file(choice.removeprefix("file:"), service)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stream = target.open("a", encoding="utf-8", buffering=1)
    except OSError as exc:
        raise CpcsError(
            f"CPCS_OTEL_EXPORTER: spans cannot be written to {target} ({exc.strerror or exc}); "
            "choose a writable file, or none",
            code="otel_exporter_unwritable",
        ) from exc
    return _JsonLinesExporter(stream)


def new_provider(service: str, exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    """A provider naming the service (``cpcs-<service>``; ``cpcs`` for ``cpcs up``) that puts the
    ids on every span and exports.

    The sampler and the batch timings follow the standard ``OTEL_TRACES_SAMPLER`` and ``OTEL_BSP_*``
    variables; ``batch=False`` exports each span as it ends (tests).
    """
    name = "cpcs" if service == "cpcs" else f"cpcs-{service}"  # cpcs up: every service in one
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(_IdsOnEverySpan())
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider


def install(provider: TracerProvider | None) -> None:
    """Make ``provider`` the one CPCS's spans go to (None: tracing off); the previous one is shut down.

    The provider is CPCS's own, not OpenTelemetry's global one, so that turning tracing off again
    (tests) leaves nothing behind.
    """
    global _provider, _tracer
    previous = _provider
    _provider = provider
    _tracer = provider.get_tracer("cpcs") if provider is not None else trace.NoOpTracer()
    if previous is not None and previous is not provider:
        previous.shutdown()


def configure(settings: Settings, service: str) -> TracerProvider | None:
    """Install the provider the settings ask for (``cpcs up``, ``cpcs service run``); None when off.

    Raises :class:`~cpcs.errors.CpcsError` (``otel_exporter_unwritable``) for a file it cannot write.
    """
    choice = exporter_choice(settings)
    exporter = new_exporter(choice, service)
    if exporter is None:
        install(None)
        return None
    provider = new_provider(service, exporter)
    install(provider)
    log.info("traces of %s exported to %s", service, choice)
    return provider


def shutdown() -> None:
    """Export what is still buffered and turn tracing off (at the end of a process)."""
    install(None)


def flush(timeout_s: float = 10.0) -> None:
    """Export the spans buffered so far (tracing stays on)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=int(timeout_s * 1000))


def provider() -> TracerProvider | None:
    return _provider


def active() -> bool:
    return _provider is not None


# --- the ids on every span -----------------------------------------------------------------------


def _as_id(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def ids_in(context: TraceContext | None = None) -> dict[str, int]:
    """The observation and alert ids known in ``context``: its span's attributes, then its baggage,
    then the observation the logs are about."""
    found: dict[str, int] = {}
    span = trace.get_current_span(context)
    attributes = span.attributes if isinstance(span, ReadableSpan) else None
    for key in IDS:
        value: object = (attributes or {}).get(key)
        if value is None:
            value = baggage.get_baggage(key, context)
        if value is not None and (number := _as_id(value)) is not None:
            found[key] = number
    observation = observation_id_var.get()
    if OBSERVATION_ID not in found and observation is not None:
        found[OBSERVATION_ID] = observation
    return found


class _IdsOnEverySpan(SpanProcessor):
    """A new span takes the ids its parent context knows."""

    def on_start(self, span: SdkSpan, parent_context: TraceContext | None = None) -> None:
        for key, value in ids_in(parent_context).items():
            span.set_attribute(key, value)


def annotate(*, observation_id: int | None = None, alert_id: int | None = None) -> None:
    """Name the observation (and alert) the current span is about, once they are known."""
    if _provider is None:
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    if observation_id is not None:
        span.set_attribute(OBSERVATION_ID, observation_id)
    if alert_id is not None:
        span.set_attribute(ALERT_ID, alert_id)


def _ids_of(message: object) -> dict[str, int]:
    ids = {
        OBSERVATION_ID: getattr(message, "observation_id", None),
        ALERT_ID: getattr(message, "alert_id", None),
    }
    return {key: value for key, value in ids.items() if isinstance(value, int)}


def _with_ids(ids: Mapping[str, int]) -> TraceContext:
    """The current context with the ids as its only baggage (what a caller sent us goes no further)."""
    context = baggage.clear()
    for key, value in ids.items():
        context = baggage.set_baggage(key, str(value), context)
    return context


# --- messages ------------------------------------------------------------------------------------


def message_carrier(message: object) -> dict[str, str] | None:
    """The context an outbox row keeps for ``message``: the current span's, with the ids as baggage.

    The current span is told the message's ids (the upload's request learns its observation here).
    None when tracing is off or no span is current.
    """
    if _provider is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    own = _ids_of(message)
    annotate(observation_id=own.get(OBSERVATION_ID), alert_id=own.get(ALERT_ID))
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, _with_ids({**ids_in(), **own}))
    return carrier


def context_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The trace headers among ``headers`` (HTTP or message headers; names in lower case)."""
    return {key.lower(): value for key, value in (headers or {}).items() if key.lower() in CONTEXT_HEADERS}


@contextmanager
def publishing(
    carrier: Mapping[str, str] | None, routing_key: str, message_id: str
) -> Iterator[dict[str, str] | None]:
    """Around the relay's publish of an outbox row: yields the headers the message carries.

    A traced row is published in a producer span, child of the span that wrote the row, and the
    headers carry the producer span; with tracing off here the row's own context goes on unchanged.
    An untraced row stays untraced.
    """
    if carrier is None or _provider is None:
        yield dict(carrier) if carrier else None
        return
    parent = _PROPAGATOR.extract(dict(carrier))
    attributes = {
        "messaging.operation.type": "send",
        "messaging.destination.name": routing_key,
        "messaging.message.id": message_id,
    }
    # No queue bound to the key is often by design (see the relay): noted, not a failure.
    with _span(f"publish {routing_key}", parent, SpanKind.PRODUCER, attributes, UnroutableError) as span:
        headers: dict[str, str] = {}
        _PROPAGATOR.inject(headers, trace.set_span_in_context(span, parent))
        yield headers


@contextmanager
def consuming(
    queue: str, routing_key: str, message_id: str, attempt: int, headers: Mapping[str, str]
) -> Iterator[None]:
    """Around a consumer's handling of one delivery: a consumer span, child of the publish."""
    if _provider is None:
        yield
        return
    parent = _PROPAGATOR.extract(context_headers(headers))
    attributes = {
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": message_id,
        "cpcs.routing_key": routing_key,
        "cpcs.attempt": attempt,
    }
    with _span(f"process {routing_key}", parent, SpanKind.CONSUMER, attributes):
        yield


@contextmanager
def _span(
    name: str,
    parent: TraceContext,
    kind: SpanKind,
    attributes: Mapping[str, Any],
    *not_failures: type[BaseException],
) -> Iterator[trace.Span]:
    """A current span that records the exception that ends it (and re-raises it); the exceptions
    ``not_failures`` are only named (``cpcs.outcome``)."""
    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except not_failures as exc:
            span.set_attribute("cpcs.outcome", type(exc).__name__)
            raise
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))
            raise


def outgoing_headers() -> dict[str, str]:
    """Trace headers for an HTTP call made in the current span (empty when tracing is off)."""
    if _provider is None or not trace.get_current_span().get_span_context().is_valid:
        return {}
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers, _with_ids(ids_in()))
    return headers


# --- stages --------------------------------------------------------------------------------------


def record_stages(prefix: str, timings_ms: Mapping[str, float], started_ns: int) -> None:
    """Child spans of the current span for the steps a record already timed (``timings_ms``).

    The record keeps durations only, so the spans are laid one after another from ``started_ns``
    (``time.time_ns()`` when the steps began) in the order the steps first ran; each keeps its
    recorded duration exactly (``cpcs.duration_ms``).
    """
    if _provider is None:
        return
    at = started_ns
    for stage, milliseconds in timings_ms.items():
        duration_ns = max(0, round(float(milliseconds) * 1e6))
        span = _tracer.start_span(
            f"{prefix}.{stage}", start_time=at, attributes={"cpcs.duration_ms": float(milliseconds)}
        )
        span.end(end_time=at + duration_ns)
        at += duration_ns


# --- HTTP ----------------------------------------------------------------------------------------


class TracingMiddleware:
    """A server span around every HTTP request (child of the caller's ``traceparent``, if any).

    Named ``METHOD /route/{template}`` once routed; a path's ``observation_id`` or ``alert_id`` is
    put on the span. Off (and for the probes, :data:`UNTRACED_PATHS`), it only passes the request on.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and _provider is not None:
            await self.app(scope, receive, _flushing_at_shutdown(send))
            return
        if scope["type"] != "http" or _provider is None or scope.get("path") in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        raw = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", ())}
        parent = _PROPAGATOR.extract(context_headers(raw))
        method = scope.get("method", "GET")
        attributes = {"http.request.method": method, "url.path": scope.get("path", "")}
        with _span(method, parent, SpanKind.SERVER, attributes) as span:

            async def send_noting_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, send_noting_status)
            finally:
                _name_after_route(span, method, scope)


def _flushing_at_shutdown(send: Send) -> Send:
    """The server's lifespan ``send``, exporting the buffered spans when the app has shut down.

    uvicorn ends a process on SIGTERM right after the app's shutdown (it raises the signal again),
    before the code around ``uvicorn.run`` could export them.
    """

    async def send_then_flush(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            flush()
        await send(message)

    return send_then_flush


def _name_after_route(span: trace.Span, method: str, scope: Scope) -> None:
    route = getattr(scope.get("route"), "path", None)
    if isinstance(route, str):
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    params = scope.get("path_params") or {}
    for key, attribute in (("observation_id", OBSERVATION_ID), ("alert_id", ALERT_ID)):
        if (number := _as_id(params.get(key, ""))) is not None:
            span.set_attribute(attribute, number)
