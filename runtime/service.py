"""Where a service is wired: pool, migrations, topics, outbox relay, consumers, HTTP, health, metrics.

Each service declares a :class:`ServiceSpec` and gets a FastAPI app whose lifespan starts and stops
everything in order. The FastStream broker runs inside the same process as the HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runtime.auth import JwtConfig
from runtime.consumer import EventConsumer
from runtime.db import create_pool, migrate
from runtime.errors import install_http_errors
from runtime.kafka import ensure_topics, make_broker
from runtime.logging import configure_logging
from runtime.metrics import RuntimeMetrics
from runtime.outbox import OutboxRelay, make_producer
from runtime.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    """What handlers and routes reach for; one per running service."""

    settings: ServiceSettings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    broker: KafkaBroker
    metrics: RuntimeMetrics


@dataclass
class ServiceSpec:
    name: str
    settings: ServiceSettings
    migrations: Path | None = None
    routers: list[APIRouter] = field(default_factory=list)
    consumers: Callable[[ServiceContext], list[EventConsumer]] = lambda _ctx: []
    background: list[Callable[[ServiceContext], asyncio.Task[None]]] = field(default_factory=list)
    description: str = ""


def context(request: Request) -> ServiceContext:
    """FastAPI dependency: the running service's context."""
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _report_end(task: asyncio.Task[None]) -> None:
    """A relay ends only when stopped; anything else is logged here and turns /health/ready to 503."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("background task ended with an error", exc_info=exc, extra={"error_type": type(exc).__name__})


def create_app(spec: ServiceSpec) -> FastAPI:
    settings = spec.settings
    metrics = RuntimeMetrics(spec.name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(spec.name, settings.log_level)
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
        app.state.ctx = ctx
        for consumer in spec.consumers(ctx):
            consumer.attach(broker)
        await broker.start()
        relay = OutboxRelay(
            pool,
            producer,
            schema=settings.db_schema,
            metrics=metrics,
            batch_size=settings.outbox_batch_size,
            poll_seconds=settings.outbox_poll_seconds,
            retention_hours=settings.outbox_retention_hours,
        )
        relay_task = asyncio.create_task(relay.run(), name=f"{spec.name}-relay")
        relay_task.add_done_callback(_report_end)
        app.state.relay_task = relay_task
        tasks = [relay_task]
        tasks += [start(ctx) for start in spec.background]
        log.info("service started")
        try:
            yield
        finally:
            # First what the service's own work needs the pool for (e.g. recording that a run stopped).
            for stop in app.state.on_stop:
                with contextlib.suppress(Exception):
                    await stop()
            relay.stop()
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await broker.stop()
            await producer.stop()
            await pool.close()
            log.info("service stopped")

    app = FastAPI(title=f"Mentoring platform: {spec.name}", description=spec.description, lifespan=lifespan)
    app.state.on_stop = []  # coroutine functions a service adds; awaited at shutdown before anything closes
    install_http_errors(app)
    app.state.jwt = JwtConfig(
        secret=settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )

    @app.exception_handler(asyncpg.DataError)
    async def unstorable_value(_: Request, exc: asyncpg.DataError) -> JSONResponse:
        """A value the database cannot hold (a NUL character, a number out of range) is the caller's
        input, not a server fault: 422. The message names the kind of problem, never the value."""
        kind = type(exc).__name__.removesuffix("Error")
        detail = [{"loc": ["body"], "msg": f"a value cannot be stored ({kind})", "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        """Cheap and external-free: the process answers, that is all liveness means."""
        return {"status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        """Ready = the database and the broker answer, and the outbox relay is still running."""
        ctx: ServiceContext | None = getattr(request.app.state, "ctx", None)
        relay_task: asyncio.Task[None] | None = getattr(request.app.state, "relay_task", None)
        checks = {"database": False, "broker": False, "outbox_relay": False}
        if ctx is not None:

            async def database() -> bool:
                async with asyncio.timeout(2):
                    return bool(await ctx.pool.fetchval("SELECT 1") == 1)

            async def broker() -> bool:
                async with asyncio.timeout(3):
                    return bool(await ctx.broker.ping(timeout=2))

            db_ok, broker_ok = await asyncio.gather(database(), broker(), return_exceptions=True)
            checks["database"] = db_ok is True
            checks["broker"] = broker_ok is True
            checks["outbox_relay"] = relay_task is not None and not relay_task.done()
        ok = all(checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.http_requests.labels(request.method, getattr(route, "path", "unmatched"), response.status_code).inc()
        return response

    for router in spec.routers:
        app.include_router(router)
    return app
