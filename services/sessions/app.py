"""The sessions service, wired: ``uvicorn services.sessions.app:app``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from contracts.topics import ENROLLMENT, MATCHING
from runtime.consumer import EventConsumer
from runtime.crypto import EncryptionSettings
from runtime.errors import install_field_errors
from runtime.service import ServiceContext, ServiceSpec, create_app
from runtime.settings import ServiceSettings
from services.sessions.api import router
from services.sessions.lifecycle import HANDLERS


class SessionsSettings(ServiceSettings, EncryptionSettings):
    model_config = SettingsConfigDict(env_prefix="SESSIONS_", extra="ignore", frozen=True)
    service_name: str = "sessions"
    db_schema: str = "sessions"
    http_port: int = 18083


def settings_class() -> type[SessionsSettings]:
    return SessionsSettings


def _consumers(ctx: ServiceContext) -> list[EventConsumer]:
    """One consumer group over programs, withdrawals and matched groups: the relationships' lifecycle."""
    return [ctx.consumer(f"{ctx.settings.db_schema}-relationships", (ENROLLMENT, MATCHING), HANDLERS)]


def build(settings: SessionsSettings | None = None) -> ServiceSpec:
    return ServiceSpec(
        name="sessions",
        settings=settings or SessionsSettings(),
        migrations=Path(__file__).parent / "migrations",
        routers=[router],
        consumers=_consumers,
        description="Relationships from matched groups: expectations, sessions, goals, private notes, close or renew.",
    )


def create(settings: SessionsSettings | None = None) -> FastAPI:
    spec = build(settings)
    assert isinstance(spec.settings, SessionsSettings)
    app = create_app(spec)
    app.state.key_ring = spec.settings.key_ring()
    install_field_errors(app)
    return app


def __getattr__(name: str) -> object:
    """``app`` is built on first access, so importing the module needs no environment."""
    if name == "app":
        return create()
    raise AttributeError(name)
