"""The metrics service, wired: ``uvicorn services.metrics.app:app``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.base import utcnow
from contracts.topics import ALERTS, ENROLLMENT, FEEDBACK, MATCHING, SESSIONS
from runtime.consumer import EventConsumer
from runtime.service import ServiceContext, ServiceSpec, create_app
from runtime.settings import ServiceSettings
from services.metrics import dashboard
from services.metrics.adapters.projection import BATCHED_HANDLERS
from services.metrics.api import install, router
from services.metrics.handlers import Clock, evaluate_forever

PROJECTED_TOPICS = (ENROLLMENT, MATCHING, SESSIONS, FEEDBACK, ALERTS)


class MetricsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="METRICS_", extra="ignore", frozen=True)
    service_name: str = "metrics"
    db_schema: str = "metrics"
    http_port: int = 18085
    evaluate_every_seconds: float = Field(default=60.0, gt=0, description="how often the safety nets are evaluated")


def settings_class() -> type[MetricsSettings]:
    return MetricsSettings


def consumer_name(schema: str) -> str:
    """The consumer group of a schema's read models: a fresh schema is a fresh group (replay from zero)."""
    return f"{schema}-projection"


def projection(ctx: ServiceContext) -> EventConsumer:
    return ctx.consumer(consumer_name(ctx.settings.db_schema), PROJECTED_TOPICS, BATCHED_HANDLERS)


def build(settings: MetricsSettings | None = None, clock: Clock = utcnow) -> ServiceSpec:
    settings = settings or MetricsSettings()

    def evaluator(ctx: ServiceContext) -> asyncio.Task[None]:
        return asyncio.create_task(evaluate_forever(ctx.pool, clock, settings.evaluate_every_seconds))

    return ServiceSpec(
        name="metrics",
        settings=settings,
        migrations=Path(__file__).parent / "migrations",
        routers=[router, dashboard.router],
        consumers=lambda ctx: [projection(ctx)],
        background=[evaluator],
        description="KPIs, fairness audit, culture scorecard, safety-net alerts and the dashboard, projected from "
        "every topic. Figures from fewer than 5 people are suppressed.",
    )


def create(settings: MetricsSettings | None = None, clock: Clock = utcnow) -> FastAPI:
    app = create_app(build(settings, clock))
    app.state.clock = clock
    install(app)
    return app


def __getattr__(name: str) -> object:
    if name == "app":
        return create()
    raise AttributeError(name)
