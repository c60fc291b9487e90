"""The enrollment service, wired: ``uvicorn services.enrollment.app:app``."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from contracts.topics import MATCHING, SESSIONS
from runtime.consumer import EventConsumer
from runtime.service import ServiceContext, ServiceSpec, create_app
from runtime.settings import ServiceSettings
from services.enrollment.adapters import loads
from services.enrollment.api import install_error_handlers, router


class EnrollmentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ENROLLMENT_", extra="ignore", frozen=True)
    service_name: str = "enrollment"
    db_schema: str = "enrollment"
    http_port: int = 18081


def settings_class() -> type[EnrollmentSettings]:
    return EnrollmentSettings


def _consumers(ctx: ServiceContext) -> list[EventConsumer]:
    """Mentor loads, so that a capacity cut below them is refused (see adapters/loads.py)."""
    return [ctx.consumer(f"{ctx.settings.db_schema}-loads", (MATCHING, SESSIONS), loads.HANDLERS)]


def build(settings: EnrollmentSettings | None = None) -> ServiceSpec:
    return ServiceSpec(
        name="enrollment",
        settings=settings or EnrollmentSettings(),
        migrations=Path(__file__).parent / "migrations",
        routers=[router],
        consumers=_consumers,
        description="Programs, the org chart and enrolments. Publishes program and participant events.",
    )


def create(settings: EnrollmentSettings | None = None):  # type: ignore[no-untyped-def]
    app = create_app(build(settings))
    install_error_handlers(app)
    return app


def __getattr__(name: str) -> object:
    """``app`` is built on first access, so importing the module needs no environment."""
    if name == "app":
        return create()
    raise AttributeError(name)
