"""Where a service is wired: pool, migrations, topics, outbox relay, consumers, HTTP, health, metrics.

Each service declares a :class:`ServiceSpec` and gets a FastAPI app whose lifespan starts and stops
everything in order. The FastStream broker runs inside the same process as the HTTP API.

Every long-running task (the outbox relay, each consumer, each entry of ``ServiceSpec.background``)
runs under a :class:`~runtime.supervision.Supervisor`: restarted after an error with a back-off,
counted in ``<service>_background_task_errors_total{task}``, and shown by ``/health/ready`` (503 with
the failing task and its reason). A service's own loops are declared as :class:`BackgroundTask`, most
simply with :func:`periodic`::

    ServiceSpec(..., background=[periodic("orphaned_runs", 15.0, fail_orphaned_runs)])

where ``async def fail_orphaned_runs(ctx: ServiceContext) -> None`` does one pass. (A plain
``Callable[[ServiceContext], asyncio.Task[None]]``, the former shape, is still accepted and supervised:
the factory is called again to restart it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from opentelemetry.trace import Tracer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.events import Event
from contracts.topics import Topic
from runtime.asgi import StatusOf
from runtime.auth import AuthenticateFirst, JwtConfig
from runtime.consumer import EventConsumer
from runtime.db import create_pool, migrate
from runtime.errors import install_error_docs, install_http_errors
from runtime.health import BrokerProbe, DatabaseProbe, Readiness, install_unavailable_errors
from runtime.heap import settle_heap
from runtime.kafka import ensure_topics, make_broker
from runtime.logging import configure_logging
from runtime.metrics import HTTP_METHODS, RuntimeMetrics
from runtime.outbox import OutboxRelay, make_producer, measure_backlog
from runtime.settings import ServiceSettings
from runtime.supervision import Supervisor, TaskStatus, every
from runtime.tracing import TraceRequests, start_tracing
from runtime.tracking import Batched, Handler

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    """What handlers and routes reach for; one per running service."""

    settings: ServiceSettings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    broker: KafkaBroker
    metrics: RuntimeMetrics
    tracer: Tracer | None = None  # None: tracing off

    def consumer(
        self, name: str, topics: tuple[Topic, ...], handlers: Mapping[type[Event], Handler | Batched]
    ) -> EventConsumer:
        """A consumer group of this service, wired the one way every service wires it: its pool, producer
        (for dead letters) and metrics, with the attempts and offset reset from its settings."""
        return EventConsumer(
            name=name,
            pool=self.pool,
            producer=self.producer,
            topics=topics,
            handlers=handlers,
            metrics=self.metrics,
            max_attempts=self.settings.consumer_max_attempts,
            offset_reset=self.settings.consumer_offset_reset,
            tracer=self.tracer,
        )


@dataclass(frozen=True)
class BackgroundTask:
    """A long-running task of a service, supervised: ``run`` works until cancelled, may report a failure
    it handles itself through its status, and is started again after a back-off when it raises."""

    name: str
    run: Callable[[ServiceContext, TaskStatus], Awaitable[None]]


def periodic(name: str, every_seconds: float, step: Callable[[ServiceContext], Awaitable[None]]) -> BackgroundTask:
    """``step(ctx)`` every ``every_seconds``; a failing step shows in readiness until one succeeds."""

    async def run(ctx: ServiceContext, status: TaskStatus) -> None:
        await every(every_seconds, partial(step, ctx), status)

    return BackgroundTask(name, run)


LegacyBackground = Callable[[ServiceContext], "asyncio.Task[None]"]


@dataclass
class ServiceSpec:
    name: str
    settings: ServiceSettings
    migrations: Path | None = None
    routers: list[APIRouter] = field(default_factory=list)
    consumers: Callable[[ServiceContext], list[EventConsumer]] = lambda _ctx: []
    background: list[BackgroundTask | LegacyBackground] = field(default_factory=list)
    description: str = ""


def _as_background(item: BackgroundTask | LegacyBackground) -> BackgroundTask:
    if isinstance(item, BackgroundTask):
        return item
    factory = item

    async def run(ctx: ServiceContext, _status: TaskStatus) -> None:
        await factory(ctx)

    return BackgroundTask(getattr(factory, "__name__", "background").strip("_") or "background", run)


async def context(request: Request) -> ServiceContext:
    """FastAPI dependency: the running service's context (async: FastAPI runs a plain function in a
    worker thread, a thread hand-off per request)."""
    ctx: ServiceContext = request.app.state.ctx
    return ctx


class _CountRequests:
    """Counts and times requests by method, route template and status: a plain ASGI middleware (Starlette's
    ``BaseHTTPMiddleware`` costs a task group and a body stream per request, a hot path's worth).

    It is the outermost middleware but one: Starlette's ``ServerErrorMiddleware`` answers an unhandled
    exception *outside* it, so a request whose exception passes through here without a response started
    is counted as the 500 that middleware then sends."""

    def __init__(self, app: ASGIApp, counter: Counter, durations: Histogram | None = None) -> None:
        self.app = app
        self.counter = counter
        self.durations = durations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = StatusOf(send)
        try:
            await self.app(scope, receive, sent)
        finally:
            status = 500 if sent.status is None else sent.status
            route = _route_template(scope)
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            self.counter.labels(method, route, status).inc()
            if self.durations is not None:
                self.durations.labels(method, route, status).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    """The template of the route that answered; ``unmatched`` when no route did (a path no route has, or
    a request refused before routing, such as authentication's 401), so made-up paths add no series."""
    return str(getattr(scope.get("route"), "path", "unmatched"))


def create_app(spec: ServiceSpec) -> FastAPI:
    settings = spec.settings
    metrics = RuntimeMetrics(spec.name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(spec.name, settings.log_level)
        tracing = start_tracing(spec.name, settings, app.state.tracer_provider)
        app.state.tracer = tracing.tracer
        pool = await create_pool(
            settings.database_url.get_secret_value(),
            settings.db_schema,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
        )
        applied = await migrate(pool, settings.db_schema, {spec.name: spec.migrations} if spec.migrations else {})
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        await ensure_topics(settings.kafka_bootstrap)
        producer = make_producer(settings.kafka_bootstrap, spec.name)
        await producer.start()
        broker = make_broker(settings.kafka_bootstrap, spec.name)
        ctx = ServiceContext(settings=settings, pool=pool, producer=producer, broker=broker, metrics=metrics)
        ctx.tracer = tracing.tracer
        app.state.ctx = ctx
        await broker.start()
        supervisor = Supervisor(errors=metrics.background_errors)
        app.state.supervisor = supervisor
        relay = OutboxRelay(
            pool,
            producer,
            schema=settings.db_schema,
            metrics=metrics,
            batch_size=settings.outbox_batch_size,
            poll_seconds=settings.outbox_poll_seconds,
            retention_hours=settings.outbox_retention_hours,
            tracer=tracing.tracer,
        )
        app.state.relay_task = supervisor.start("outbox_relay", relay.run, graceful=True)
        database_probe = DatabaseProbe(settings.database_url.get_secret_value(), settings.db_schema)
        broker_probe = BrokerProbe(settings.kafka_bootstrap, f"{spec.name}-ready")
        app.state.readiness = Readiness(
            database_probe.check, broker_probe.check, supervisor, on_database_back=pool.expire_connections
        )
        consumers = spec.consumers(ctx)
        for consumer in consumers:
            run = partial(consumer.run, settings.kafka_bootstrap)
            supervisor.start(f"consumer:{consumer.name}", run, graceful=True)
        for item in spec.background:
            task = _as_background(item)
            supervisor.start(task.name, partial(task.run, ctx))
        settle_heap()  # the cyclic collector set for batches (runtime/heap.py)
        log.info("service started")
        try:
            yield
        finally:
            # First what the service's own work needs the pool for (e.g. recording that a run stopped).
            for stop in app.state.on_stop:
                with contextlib.suppress(Exception):
                    await stop()
            relay.stop()
            for consumer in consumers:
                consumer.stop()
            await supervisor.stop()
            app.state.readiness = None
            await database_probe.close()
            await broker.stop()
            await producer.stop()
            await pool.close()
            await tracing.shutdown()
            log.info("service stopped")

    app = FastAPI(title=f"Mentoring platform: {spec.name}", description=spec.description, lifespan=lifespan)
    app.state.on_stop = []  # coroutine functions a service adds; awaited at shutdown before anything closes
    # OpenTelemetry (runtime/tracing.py): a TracerProvider set here before start-up is traced into (tests);
    # otherwise the OTLP endpoint of the settings decides, and without one tracing is off.
    app.state.tracer_provider = None
    app.state.tracer = None
    install_http_errors(app)
    install_error_docs(app)
    app.state.jwt = JwtConfig(
        secret=settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    app.add_middleware(AuthenticateFirst, config=lambda: app.state.jwt)
    app.state.metrics = metrics  # where a service registers metrics of its own (same registry, same /metrics)

    @app.exception_handler(asyncpg.DataError)
    async def unstorable_value(_: Request, exc: asyncpg.DataError) -> JSONResponse:
        """A value the database cannot hold (a NUL character, a number out of range) is the caller's
        input, not a server fault: 422. The message names the kind of problem, never the value."""
        kind = type(exc).__name__.removesuffix("Error")
        detail = [{"loc": ["body"], "msg": f"a value cannot be stored ({kind})", "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    install_unavailable_errors(app)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        """Cheap and external-free: the process answers, that is all liveness means."""
        return {"status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        """Ready = the database and the broker answer, and every supervised task (outbox relay,
        consumers, background loops) runs without a current failure; 503 names what fails and why
        (:mod:`runtime.health`: probes that cannot wedge, and a task waiting out an outage that has
        ended shown as recovering)."""
        readiness: Readiness | None = getattr(request.app.state, "readiness", None)
        if readiness is None:  # starting or stopping
            checks = {"database": False, "broker": False, "outbox_relay": False}
            return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
        ok, body = await readiness.evaluate()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        ctx: ServiceContext | None = getattr(request.app.state, "ctx", None)
        if ctx is not None:
            await measure_backlog(ctx.pool, metrics)
            metrics.set_readiness(json.loads(bytes((await ready(request)).body))["checks"])
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_CountRequests, counter=metrics.http_requests, durations=metrics.http_duration)
    app.add_middleware(TraceRequests, tracer=lambda: app.state.tracer)  # outermost: spans cover auth and all

    for router in spec.routers:
        app.include_router(router)
    return app
