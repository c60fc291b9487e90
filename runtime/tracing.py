"""OpenTelemetry traces across the HTTP call, the outbox, the relay and the consumers: one trace per
enrolment, from ``POST /programs/{program_id}/enrolments`` to matching's pool.

The chain and where each link is made:

- **HTTP** (:class:`TraceRequests`): a ``SERVER`` span per request, named by method and route template
  (``POST /programs/{program_id}/enrolments``), continuing a caller's W3C ``traceparent`` if one came in.
  The probes and ``/metrics`` are not traced (a probe every few seconds per pod is noise, not a trace).
- **Outbox write** (:func:`traced_outbox_write`, around :func:`runtime.outbox.add_to_outbox`): an
  ``outbox write`` span, child of whatever span is current (the request, or a consumer span), and every
  envelope without a ``traceparent`` of its own is stamped with this span's. The ``traceparent`` is then
  a header in the outbox row (its ``headers`` JSON), so the trace survives the commit, a crash, a restart.
- **Relay** (:func:`start_publish`): a ``PRODUCER`` span ``send <topic>`` per row, child of the context
  stored in the row, ended when the broker acknowledges the record (or fails it); the record's
  ``traceparent`` header is replaced by the producer span's, so consumers hang under the publish.
- **Consumer** (:func:`consumer_spans`): one ``CONSUMER`` span ``process <topic>`` **per event**, child
  of the ``traceparent`` the record carries. Per-event spans, not one batch span with links: a
  batch mixes events of many traces, and only a child span puts an enrolment's handling *in* its trace.
  A per-event handler runs with its event's span current, so what it writes to the outbox continues
  the same trace; a batch handler receiving a run of several events has every one of their spans open
  around the call but none current (they are different traces). Duplicates, skipped and dead-lettered
  records get no span: only events a handler applies.

Off unless configured: a service traces only when an OTLP endpoint is set (its ``<PREFIX>_OTLP_ENDPOINT``
setting, or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; OTLP
over HTTP/protobuf, port 4318) and ``OTEL_SDK_DISABLED`` is not ``true``; tests pass a provider of their
own. Off, the tracer is ``None`` and every hook is one ``None`` check: no span objects, no context work
per event. No global tracer provider is ever installed: each service owns its provider (with its
``service.name``), so two services in one process (the tests) keep their own.

Confidentiality: a failed span carries the exception's type and :func:`runtime.logging.describe_exception`
(never the exception's text or a stack trace, which may quote a note or a row); attributes are ids,
topics, event types and status codes, never payloads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.semconv._incubating.attributes import messaging_attributes as messaging
from opentelemetry.semconv.attributes import error_attributes, http_attributes, service_attributes, url_attributes
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.envelope import Envelope
from runtime.asgi import StatusOf
from runtime.logging import describe_exception

if TYPE_CHECKING:
    import asyncpg
    from aiokafka.structs import ConsumerRecord

    from runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

INSTRUMENTATION = "mentoring-platform"
_PROPAGATOR = TraceContextTextMapPropagator()  # W3C traceparent/tracestate, as the envelope documents
_TRACER = context.create_key("mentoring-platform-tracer")
_W3C_HEADERS = (b"traceparent", b"tracestate")
_UNTRACED_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


# Set-up -------------------------------------------------------------------------------------------------


def otlp_endpoint(settings: ServiceSettings) -> str | None:
    """Where spans go (the OTLP/HTTP *traces* URL), or None: tracing off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if settings.otlp_endpoint:
        return settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    if traces := os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return traces
    if base := os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return base.rstrip("/") + "/v1/traces"
    return None


@dataclass
class ServiceTracing:
    """A service's tracer (None: off) and the provider it must flush at shutdown, if it built one."""

    tracer: Tracer | None
    _owned: TracerProvider | None = None

    async def shutdown(self) -> None:
        """Export what is still buffered (blocking HTTP, so off the event loop)."""
        if self._owned is not None:
            await asyncio.to_thread(self._owned.shutdown)


def start_tracing(service: str, settings: ServiceSettings, provider: trace.TracerProvider | None) -> ServiceTracing:
    """The service's tracing: into ``provider`` when given (tests), else to the configured OTLP endpoint,
    else off."""
    if provider is not None:
        return ServiceTracing(provider.get_tracer(INSTRUMENTATION))
    endpoint = otlp_endpoint(settings)
    if endpoint is None:
        return ServiceTracing(None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    owned = TracerProvider(resource=Resource.create({service_attributes.SERVICE_NAME: service}))
    owned.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    log.info("exporting traces over OTLP")  # the endpoint may carry credentials: not logged
    return ServiceTracing(owned.get_tracer(INSTRUMENTATION), owned)


def active_tracer() -> Tracer | None:
    """The tracer of the request or event being handled in this task, None when tracing is off."""
    tracer: Tracer | None = context.get_value(_TRACER)  # type: ignore[assignment]
    return tracer


def _failed(span: Span, exc: BaseException) -> None:
    span.set_attribute(error_attributes.ERROR_TYPE, type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, describe_exception(exc)[:300]))


def _parent(traceparent: str | None) -> Context:
    """The remote parent a ``traceparent`` names; an empty context (a new trace) when there is none."""
    if not traceparent:
        return Context()
    return _PROPAGATOR.extract({"traceparent": traceparent}, context=Context())


def traceparent_of(span: Span) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span, Context()))
    return carrier.get("traceparent")


# HTTP ---------------------------------------------------------------------------------------------------


class TraceRequests:
    """A ``SERVER`` span per HTTP request, renamed to the route template once routing has matched.

    A plain ASGI middleware rather than ``opentelemetry-instrumentation-asgi``: that one names the span
    before routing (by raw path, one name per participant) and records an unhandled exception's message
    and stack trace on the span, which may quote confidential input.
    """

    def __init__(self, app: ASGIApp, tracer: Callable[[], Tracer | None]) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = self.tracer() if scope["type"] == "http" else None
        if tracer is None or scope["path"] in _UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _W3C_HEADERS}
        parent = _PROPAGATOR.extract(carrier, context=Context())
        span = tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                http_attributes.HTTP_REQUEST_METHOD: method,
                url_attributes.URL_PATH: scope["path"],
                url_attributes.URL_SCHEME: scope.get("scheme", "http"),
            },
        )
        token = context.attach(context.set_value(_TRACER, tracer, trace.set_span_in_context(span, parent)))
        sent = StatusOf(send)
        status: int | None = None
        failed = False
        try:
            await self.app(scope, receive, sent)
        except Exception as exc:
            _failed(span, exc)
            failed = True
            status = sent.status or 500  # answered by Starlette's outermost error middleware, after this one
            raise
        else:
            status = sent.status
        finally:
            context.detach(token)
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.update_name(f"{method} {route}")
                span.set_attribute(http_attributes.HTTP_ROUTE, route)
            if status is not None:
                span.set_attribute(http_attributes.HTTP_RESPONSE_STATUS_CODE, status)
                if status >= 500 and not failed:
                    span.set_status(Status(StatusCode.ERROR))
                    span.set_attribute(error_attributes.ERROR_TYPE, str(status))
            span.end()


# Outbox -------------------------------------------------------------------------------------------------


class OutboxWrite(Protocol):
    def __call__(self, conn: asyncpg.Connection, /, *envelopes: Envelope) -> Coroutine[Any, Any, None]: ...


def traced_outbox_write(write: OutboxWrite) -> OutboxWrite:
    """Wraps :func:`runtime.outbox.add_to_outbox`: an ``outbox write`` span around the insert, whose
    ``traceparent`` the envelopes carry into the row. Outside a traced request or handler it is a
    direct call."""

    @functools.wraps(write)
    async def traced(conn: asyncpg.Connection, /, *envelopes: Envelope) -> None:
        tracer = active_tracer()
        if tracer is None or not envelopes:
            await write(conn, *envelopes)
            return
        types = sorted({env.type for env in envelopes})
        topics = sorted({env.topic for env in envelopes})
        attributes: dict[str, Any] = {"outbox.event_count": len(envelopes), "cloudevents.event_type": types}
        if len(topics) == 1:
            attributes[messaging.MESSAGING_DESTINATION_NAME] = topics[0]
        with tracer.start_as_current_span(
            "outbox write", attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            traceparent = traceparent_of(span)
            stamped = [
                env if env.traceparent else dataclasses.replace(env, traceparent=traceparent) for env in envelopes
            ]
            try:
                await write(conn, *stamped)
            except BaseException as exc:
                _failed(span, exc)
                raise

    return traced


def start_publish(tracer: Tracer, topic: str, headers: list[tuple[str, bytes]]) -> Span:
    """The relay's ``PRODUCER`` span for one row, child of the context the row stored; ``headers`` (the
    record's, about to be sent) get this span's ``traceparent`` in place of the row's. A row written
    without one (tracing was off then) starts a trace here. Should the send itself raise, the span is
    never ended, so never exported: the relay pass fails and the row is sent again, under a new span."""
    found = {k: v.decode("latin-1") for k, v in headers if k in ("traceparent", "ce_id", "ce_type")}
    span = tracer.start_span(
        f"send {topic}",
        context=_parent(found.get("traceparent")),
        kind=SpanKind.PRODUCER,
        attributes={
            messaging.MESSAGING_SYSTEM: "kafka",
            messaging.MESSAGING_OPERATION_TYPE: "send",
            messaging.MESSAGING_DESTINATION_NAME: topic,
            messaging.MESSAGING_MESSAGE_ID: found.get("ce_id", ""),
            "cloudevents.event_type": found.get("ce_type", ""),
        },
    )
    headers[:] = [(k, v) for k, v in headers if k != "traceparent"]
    if traceparent := traceparent_of(span):
        headers.append(("traceparent", traceparent.encode()))
    return span


def end_when_acked(span: Span, sent: asyncio.Future[Any]) -> None:
    """End the producer span when the broker acknowledges the record, with its partition and offset, or
    as failed when the send fails or is given up (a relay pass that times out cancels it)."""

    def done(future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            span.set_status(Status(StatusCode.ERROR, "cancelled before the broker acknowledged"))
        elif (exc := future.exception()) is not None:
            _failed(span, exc)
        else:
            metadata = future.result()
            span.set_attribute(messaging.MESSAGING_DESTINATION_PARTITION_ID, str(metadata.partition))
            span.set_attribute(messaging.MESSAGING_KAFKA_OFFSET, metadata.offset)
        span.end()

    sent.add_done_callback(done)


# Consumer -----------------------------------------------------------------------------------------------


NO_SPANS: AbstractContextManager[None] = nullcontext()  # tracing off: one shared object, nothing allocated per call


@contextmanager
def consumer_spans(
    tracer: Tracer, group: str, items: Sequence[tuple[ConsumerRecord[bytes, bytes], Envelope]]
) -> Iterator[None]:
    """One ``CONSUMER`` span per event around the handler call that applies ``items`` (one event, or a
    batch handler's run); the span of a single event is current, so the handler's outbox writes are its
    children. A failure marks every span of the call (a failed run is retried one event at a time)."""
    spans = [
        tracer.start_span(
            f"process {record.topic}",
            context=_parent(envelope.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                messaging.MESSAGING_SYSTEM: "kafka",
                messaging.MESSAGING_OPERATION_TYPE: "process",
                messaging.MESSAGING_DESTINATION_NAME: record.topic,
                messaging.MESSAGING_DESTINATION_PARTITION_ID: str(record.partition),
                messaging.MESSAGING_KAFKA_OFFSET: record.offset,
                messaging.MESSAGING_CONSUMER_GROUP_NAME: group,
                messaging.MESSAGING_MESSAGE_ID: envelope.id,
                "cloudevents.event_type": envelope.type,
            },
        )
        for record, envelope in items
    ]
    current = context.set_value(_TRACER, tracer)
    if len(spans) == 1:
        current = trace.set_span_in_context(spans[0], current)
    token = context.attach(current)
    try:
        yield
    except BaseException as exc:
        for span in spans:
            _failed(span, exc)
        raise
    finally:
        context.detach(token)
        for span in spans:
            span.end()
