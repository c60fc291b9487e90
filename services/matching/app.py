"""The matching service, wired: ``uvicorn services.matching.app:app``."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from contracts.topics import ENROLLMENT, SESSIONS
from runtime.consumer import EventConsumer
from runtime.service import BackgroundTask, ServiceContext, ServiceSpec, create_app, periodic
from runtime.settings import ServiceSettings
from services.matching.adapters import runs as repo
from services.matching.adapters.pool import HANDLERS
from services.matching.adapters.run_metrics import run_metrics
from services.matching.adapters.solver_process import warm_up
from services.matching.api import install, router


class MatchingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MATCHING_", extra="ignore", frozen=True)
    service_name: str = "matching"
    db_schema: str = "matching"
    http_port: int = 18082


def settings_class() -> type[MatchingSettings]:
    return MatchingSettings


def _consumers(ctx: ServiceContext) -> list[EventConsumer]:
    return [ctx.consumer(f"{ctx.settings.db_schema}-pools", (ENROLLMENT, SESSIONS), HANDLERS)]


log = logging.getLogger(__name__)

RECOVER_EVERY_SECONDS = 15.0
SILENT_FOR_SECONDS = 60.0
"""A run whose heartbeat (every few seconds, see handlers.HEARTBEAT_SECONDS) is this old has no process."""


async def fail_orphaned_runs(ctx: ServiceContext) -> None:
    """Runs whose process died are marked failed, so nobody waits on them (or is refused as Busy) for ever.
    Judged by their heartbeat, so a replica never fails another replica's live run."""
    async with ctx.pool.acquire() as conn:
        for run_id in await repo.fail_orphaned_runs(conn, silent_for_seconds=SILENT_FOR_SECONDS):
            log.warning("matching run orphaned by a stopped process", extra={"run_id": run_id})
            run_metrics(ctx.metrics.registry).orphaned.inc()


def _recovery() -> BackgroundTask:
    """Supervised: a failing pass (the database away) is counted, shown in readiness and retried."""
    return periodic("orphaned_runs", RECOVER_EVERY_SECONDS, fail_orphaned_runs)


def build(settings: MatchingSettings | None = None) -> ServiceSpec:
    return ServiceSpec(
        name="matching",
        settings=settings or MatchingSettings(),
        migrations=Path(__file__).parent / "migrations",
        routers=[router],
        consumers=_consumers,
        background=[_recovery()],
        description="Fair, explainable group formation: group.matched, participant.unmatched, matching.completed.",
    )


def create(settings: MatchingSettings | None = None) -> FastAPI:
    app = create_app(build(settings))
    install(app)
    run_metrics(app.state.metrics.registry)  # registered now: /metrics shows the run series from the start
    threading.Thread(target=warm_up, name="matching-fork-server", daemon=True).start()  # the solver's imports, once
    return app


def __getattr__(name: str) -> object:
    if name == "app":
        return create()
    raise AttributeError(name)
