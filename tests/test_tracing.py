"""Traces as operations see them: one enrolment is one trace, from the enrollment service's HTTP call
through its outbox and relay to matching's pool projection, on the real Kafka and PostgreSQL.

Spans go to the SDK's in-memory exporter through a provider per service, handed to each app before it
starts (``app.state.tracer_provider``): no global tracer provider is installed, so nothing leaks into
other tests.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bench.synthetic_org import enrolments, org_chart
from conftest import StackEndpoints, TopicTail, eventually, unique
from contracts.envelope import Envelope
from contracts.events import ParticipantEnrolled, ParticipantWithdrawn
from contracts.topics import ENROLLMENT
from runtime.auth import issue_token
from runtime.logging import JsonFormatter
from runtime.settings import ServiceSettings
from runtime.tail import wait_for_consumer_group
from runtime.tracing import TraceRequests, consumer_spans, otlp_endpoint, start_tracing, traced_outbox_write
from services.enrollment.app import EnrollmentSettings
from services.enrollment.app import create as create_enrollment
from services.matching.app import MatchingSettings
from services.matching.app import create as create_matching

ENROLLED = ParticipantEnrolled.TYPE


def _provider(service: str, exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _service(span: ReadableSpan) -> object:
    return span.resource.attributes.get("service.name")


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def _traceparent(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{int(span.context.trace_flags):02x}"


# The trace of one enrolment, on the real stack ---------------------------------------------------------


@dataclass
class Traced:
    enrollment: httpx.AsyncClient
    admin: dict[str, str]
    spans: InMemorySpanExporter
    enrollment_schema: str
    matching_schema: str
    dsn: str


@pytest.fixture
async def traced(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[Traced]:
    e_schema, m_schema = unique("enrollment_trace"), unique("matching_trace")
    scratch_schemas += [e_schema, m_schema]
    dsn, kafka = stack.admin_dsn, stack.kafka_bootstrap
    common: dict[str, Any] = {"database_url": dsn, "kafka_bootstrap": kafka, "consumer_offset_reset": "latest"}
    matching = create_matching(MatchingSettings(db_schema=m_schema, log_level="WARNING", **common))
    enrollment = create_enrollment(EnrollmentSettings(db_schema=e_schema, log_level="WARNING", **common))
    exporter = InMemorySpanExporter()
    providers = [_provider("matching", exporter), _provider("enrollment", exporter)]
    matching.state.tracer_provider, enrollment.state.tracer_provider = providers
    try:
        async with AsyncExitStack() as running:
            await running.enter_async_context(matching.router.lifespan_context(matching))
            await wait_for_consumer_group(kafka, f"{m_schema}-pools")
            await running.enter_async_context(enrollment.router.lifespan_context(enrollment))
            client = await running.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=enrollment), base_url="http://enrollment")
            )
            admin = {"Authorization": f"Bearer {issue_token(enrollment.state.jwt, 'admin-trace', ['admin'])}"}
            yield Traced(client, admin, exporter, e_schema, m_schema, dsn)
    finally:
        for provider in providers:
            provider.shutdown()


async def _in_pool(t: Traced, program_id: str, participant_id: str) -> bool:
    conn = await asyncpg.connect(t.dsn)
    try:
        return bool(
            await conn.fetchval(
                f'SELECT count(*) FROM "{t.matching_schema}".pool WHERE program_id = $1 AND participant_id = $2',
                program_id,
                participant_id,
            )
        )
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await conn.close()


async def _outbox_traceparent(t: Traced, event_id: str) -> str | None:
    conn = await asyncpg.connect(t.dsn)
    try:
        value: str | None = await conn.fetchval(
            f"SELECT headers->>'traceparent' FROM \"{t.enrollment_schema}\".outbox WHERE event_id = $1::uuid", event_id
        )
        return value
    finally:
        await conn.close()


@pytest.mark.stack
async def test_one_enrolment_is_one_trace_from_the_http_call_to_matchings_pool(
    traced: Traced, stack: StackEndpoints
) -> None:
    t = traced
    people = org_chart(30, seed=12, prefix=unique("T"))
    r = await t.enrollment.post("/org-chart", json=[p.row() for p in people], headers=t.admin)
    assert r.status_code == 200, r.text
    r = await t.enrollment.post(
        "/programs", json={"name": "Traced", "form": "one_to_one", "starts_on": "2026-01-01"}, headers=t.admin
    )
    assert r.status_code == 201, r.text
    program_id: str = r.json()["program_id"]
    mentee = next(row for row in enrolments(people, 20, seed=4) if row["role"] == "mentee")

    async with TopicTail(stack.kafka_bootstrap, ENROLLMENT.name) as tail:
        r = await t.enrollment.post(f"/programs/{program_id}/enrolments", json=mentee, headers=t.admin)
        assert r.status_code == 201, r.text
        records = await tail.collect(
            lambda rec: rec.key == program_id.encode() and ("ce_type", ENROLLED.encode()) in rec.headers, count=1
        )
        assert records, "the enrolment reached Kafka"

    route = "POST /programs/{program_id}/enrolments"
    path = f"/programs/{program_id}/enrolments"
    [server] = [s for s in t.spans.get_finished_spans() if s.name == route and _attrs(s)["url.path"] == path]
    assert server.context is not None
    trace_id = server.context.trace_id

    def in_trace() -> list[ReadableSpan]:
        return [s for s in t.spans.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id]

    async def handled_by_matching() -> bool:
        # the publish span ends at the broker's ack, which may come after matching has consumed the record
        spans = in_trace()
        ended = {_id(s) for s in spans}
        consumed = any(
            s.kind is SpanKind.CONSUMER and _service(s) == "matching" and _parent_id(s) in ended for s in spans
        )
        return consumed and await _in_pool(t, program_id, mentee["participant_id"])

    await eventually(handled_by_matching, 60, "matching to apply the enrolment, with a consumer span in its trace")

    # walk up from matching's handling: its parent is the publish, whose parent is the outbox write
    spans = {_id(s): s for s in in_trace()}
    # one consumer span in matching (a redelivery would be a duplicate, applied never twice, traced never)
    [process] = [s for s in spans.values() if s.kind is SpanKind.CONSUMER and _service(s) == "matching"]
    send = spans[_parent_id(process) or 0]
    outbox = spans[_parent_id(send) or 0]
    assert outbox.name == "outbox write"

    # the HTTP server span, named by its route template, in the enrollment service
    assert server.kind is SpanKind.SERVER and _service(server) == "enrollment"
    assert _attrs(server)["http.route"] == "/programs/{program_id}/enrolments"
    assert _attrs(server)["http.response.status_code"] == 201
    # the outbox write inside the request, the relay's publish under it, matching's handling under that
    assert _parent_id(outbox) == _id(server) and _service(outbox) == "enrollment"
    assert _attrs(outbox)["cloudevents.event_type"] == (ENROLLED,)
    assert send.kind is SpanKind.PRODUCER and _service(send) == "enrollment"
    assert send.name == f"send {ENROLLMENT.name}" and _attrs(send)["messaging.destination.name"] == ENROLLMENT.name
    assert process.name == f"process {ENROLLMENT.name}"
    assert _attrs(process)["messaging.consumer.group.name"] == f"{t.matching_schema}-pools"
    assert _attrs(process)["cloudevents.event_type"] == ENROLLED
    event_id = _attrs(process)["messaging.message.id"]
    assert _attrs(send)["messaging.message.id"] == event_id
    assert all(s.status.status_code is not StatusCode.ERROR for s in (server, outbox, send, process))

    # where the context travelled: the outbox row keeps the write's, the Kafka record carries the publish's
    assert await _outbox_traceparent(t, str(event_id)) == _traceparent(outbox)
    [record] = [r for r in records if dict(r.headers)["traceparent"].decode() == _traceparent(send)]
    assert dict(record.headers)["ce_id"].decode() == event_id


class _Collector:
    """A minimal OTLP/HTTP collector on a loopback port: keeps every export request it receives."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    received.append(ExportTraceServiceRequest.FromString(body))
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def spans(self) -> list[tuple[str, str]]:
        """(service.name, span name) of everything received."""
        out = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    out += [(attributes.get("service.name", ""), span.name) for span in scope_spans.spans]
        return out


@pytest.fixture
def collector() -> Iterator[_Collector]:
    c = _Collector()
    c.thread.start()
    yield c
    c.server.shutdown()
    c.server.server_close()


@pytest.mark.stack
async def test_with_an_otlp_endpoint_a_service_exports_its_spans_over_otlp(
    stack: StackEndpoints, scratch_schemas: list[str], collector: _Collector
) -> None:
    schema = unique("enrollment_otlp")
    scratch_schemas.append(schema)
    settings = EnrollmentSettings(
        database_url=stack.admin_dsn,
        kafka_bootstrap=stack.kafka_bootstrap,
        db_schema=schema,
        consumer_offset_reset="latest",
        log_level="WARNING",
        otlp_endpoint=collector.url,
    )
    app = create_enrollment(settings)
    async with app.router.lifespan_context(app):
        token = issue_token(app.state.jwt, "admin-otlp", ["admin"])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://enrollment") as client:
            r = await client.get("/programs", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            assert (await client.get("/health/ready")).status_code == 200
    # stopping the service flushed what the batch processor held
    assert ("enrollment", "GET /programs") in collector.spans()
    assert all(name != "GET /health/ready" for _, name in collector.spans())


# The parts, without the stack ---------------------------------------------------------------------------


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    spans = InMemorySpanExporter()
    provider = _provider("unit", spans)
    yield spans, provider
    provider.shutdown()


def _tiny_app(provider: TracerProvider | None) -> FastAPI:
    app = FastAPI()
    tracer = provider.get_tracer("test") if provider else None

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/broken")
    async def broken() -> None:
        raise ValueError("the private note says: do not tell anyone")

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(TraceRequests, tracer=lambda: tracer)
    return app


async def test_a_request_span_is_named_by_route_and_continues_the_callers_trace(
    exporter: tuple[InMemorySpanExporter, TracerProvider],
) -> None:
    spans, provider = exporter
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    transport = httpx.ASGITransport(app=_tiny_app(provider))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/things/p-42", headers={"traceparent": caller})).status_code == 200
        assert (await client.get("/health/live")).status_code == 200
    [span] = spans.get_finished_spans()
    assert span.name == "GET /things/{thing_id}" and span.kind is SpanKind.SERVER
    assert span.context is not None and f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    assert _attrs(span)["http.response.status_code"] == 200


async def test_a_failed_request_span_says_what_failed_but_never_quotes_the_error(
    exporter: tuple[InMemorySpanExporter, TracerProvider],
) -> None:
    spans, provider = exporter
    transport = httpx.ASGITransport(app=_tiny_app(provider), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/broken")).status_code == 500
    [span] = spans.get_finished_spans()
    assert span.name == "GET /broken"
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)["error.type"] == "ValueError"
    assert _attrs(span)["http.response.status_code"] == 500
    assert not span.events, "no exception event: its message and stack trace may quote content"
    assert "private note" not in str(span.to_json())


async def test_without_a_tracer_nothing_is_traced_and_events_keep_no_traceparent() -> None:
    transport = httpx.ASGITransport(app=_tiny_app(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/things/a")).status_code == 200

    written: list[Envelope] = []

    @traced_outbox_write
    async def write(_conn: asyncpg.Connection, /, *envelopes: Envelope) -> None:
        written.extend(envelopes)

    event = ParticipantWithdrawn(program_id="prg-1", participant_id="p-1", withdrawn_at=datetime.now(UTC))
    await write(None, Envelope(data=event))
    assert [e.traceparent for e in written] == [None]


def test_tracing_is_off_unless_an_otlp_endpoint_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    settings = ServiceSettings(database_url="postgresql://x@localhost/x")
    assert otlp_endpoint(settings) is None
    assert start_tracing("enrollment", settings, None).tracer is None

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert otlp_endpoint(settings) == "http://collector:4318/v1/traces"
    own = settings.model_copy(update={"otlp_endpoint": "http://mine:4318"})
    assert otlp_endpoint(own) == "http://mine:4318/v1/traces"
    tracing = start_tracing("enrollment", settings, None)
    assert tracing.tracer is not None
    assert tracing._owned is not None
    assert tracing._owned.resource.attributes["service.name"] == "enrollment"
    asyncio.run(tracing.shutdown())  # nothing was recorded: nothing is sent

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert otlp_endpoint(settings) is None


def test_log_lines_carry_the_current_trace_and_span(exporter: tuple[InMemorySpanExporter, TracerProvider]) -> None:
    _, provider = exporter
    formatter = JsonFormatter("unit")
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "something happened", None, None)
    assert "trace_id" not in json.loads(formatter.format(record))
    with provider.get_tracer("test").start_as_current_span("work") as span:
        line = json.loads(formatter.format(record))
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["span_id"] == f"{span.get_span_context().span_id:016x}"


def test_the_chart_sets_the_otlp_endpoint_only_when_given() -> None:
    from deploy.tools import ensure

    chart = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "mentoring"
    base = [str(ensure("helm")), "template", "m", str(chart), "--set", "existingSecret=s", "--set", "encryptionKeyId=k"]

    def config_maps(*extra: str) -> list[dict[str, Any]]:
        out = subprocess.run([*base, *extra], capture_output=True, text=True, check=True, timeout=120).stdout
        return [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap"]

    assert all("OTEL_EXPORTER_OTLP_ENDPOINT" not in m["data"] for m in config_maps())
    traced = config_maps("--set", "tracing.otlpEndpoint=http://otel-collector:4318")
    assert len(traced) == 5
    assert all(m["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318" for m in traced)


def test_a_failed_handling_marks_each_events_span_without_quoting_the_error(
    exporter: tuple[InMemorySpanExporter, TracerProvider],
) -> None:
    spans, provider = exporter
    publisher = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    event = ParticipantWithdrawn(program_id="prg-1", participant_id="p-1", withdrawn_at=datetime.now(UTC))
    records = [ConsumerRecord(ENROLLMENT.name, 2, offset, 0, 0, b"prg-1", b"", None, 0, 0, []) for offset in (7, 8)]
    items = list(zip(records, [Envelope(data=event, traceparent=publisher), Envelope(data=event)], strict=True))
    with pytest.raises(ValueError), consumer_spans(provider.get_tracer("test"), "group-1", items):
        raise ValueError("the private note says: do not tell anyone")
    first, second = spans.get_finished_spans()
    assert first.kind is SpanKind.CONSUMER and first.name == f"process {ENROLLMENT.name}"
    assert first.context is not None and f"{first.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first.parent is not None and f"{first.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert second.parent is None, "an event without a traceparent starts a trace of its own"
    assert _attrs(first)["messaging.kafka.offset"] == 7 and _attrs(second)["messaging.kafka.offset"] == 8
    for span in (first, second):
        assert span.status.status_code is StatusCode.ERROR and _attrs(span)["error.type"] == "ValueError"
        assert not span.events and "private note" not in str(span.to_json())
