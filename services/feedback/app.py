"""The feedback service, wired: ``uvicorn services.feedback.app:app``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from contracts.base import utcnow
from contracts.topics import ENROLLMENT, MATCHING, SESSIONS
from runtime.consumer import EventConsumer
from runtime.crypto import EncryptionSettings
from runtime.service import ServiceContext, ServiceSpec, create_app
from runtime.settings import ServiceSettings
from services.feedback.api import install_error_handlers, router
from services.feedback.handlers import HANDLERS

MIGRATIONS = Path(__file__).parent / "migrations"


class FeedbackSettings(ServiceSettings, EncryptionSettings):
    """``FEEDBACK_...`` environment; ``FEEDBACK_ENCRYPTION_KEYS`` / ``FEEDBACK_ENCRYPTION_KEY_ID`` seal comments."""

    model_config = SettingsConfigDict(env_prefix="FEEDBACK_", extra="ignore", frozen=True)
    service_name: str = "feedback"
    db_schema: str = "feedback"
    http_port: int = 18084


def settings_class() -> type[FeedbackSettings]:
    return FeedbackSettings


def _consumers(ctx: ServiceContext) -> list[EventConsumer]:
    """Groups and members from matching; sessions held and closures from sessions; who left a program
    from enrollment (their part in its groups ends)."""
    return [ctx.consumer(f"{ctx.settings.db_schema}-projection", (ENROLLMENT, MATCHING, SESSIONS), HANDLERS)]


def build(settings: FeedbackSettings | None = None) -> ServiceSpec:
    return ServiceSpec(
        name="feedback",
        settings=settings or FeedbackSettings(),
        migrations=MIGRATIONS,
        routers=[router],
        consumers=_consumers,
        description="Surveys (versioned data), due surveys and answers; free-text comments encrypted at rest. "
        "Publishes feedback.given (v2): scores only.",
    )


def create(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    app = create_app(build(settings))
    app.state.key_ring = settings.key_ring()
    app.state.clock = utcnow
    install_error_handlers(app)
    return app


def __getattr__(name: str) -> object:
    """``app`` is built on first access, so importing the module needs no environment."""
    if name == "app":
        return create()
    raise AttributeError(name)
