"""Settings every service shares; each service subclasses with its own env prefix (``MATCHING_...``).

Validation runs at start-up, so a missing database URL or a bad port stops the process with a clear
message instead of failing on the first request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class JwtSettings(BaseSettings):
    """How bearer tokens are signed and checked; the part of a service's settings the dev-token command
    reads too, so a token it issues is one the service accepts (same env names, same defaults)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    jwt_secret: SecretStr = SecretStr("dev-only-secret-change-me-in-any-real-deployment")
    jwt_issuer: str = "mentoring-platform-dev"
    jwt_audience: str = "mentoring-platform"


class ServiceSettings(JwtSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "service"
    database_url: SecretStr = Field(description="postgresql://user:password@host:port/db")
    db_schema: str = Field(default="public", description="the Postgres schema this service owns")
    db_pool_min: int = Field(default=1, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    kafka_bootstrap: str = "127.0.0.1:19092"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    log_level: str = "INFO"
    outbox_batch_size: int = Field(default=5000, ge=1, le=50_000)
    outbox_poll_seconds: float = Field(
        default=0.2, gt=0, description="how often an idle relay looks for rows (a bulk write also wakes it at once)"
    )
    outbox_retention_hours: float = Field(
        default=168, ge=0, description="published outbox rows are deleted after this long; 0 keeps them"
    )
    consumer_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="where a new consumer group starts: earliest rebuilds state from history"
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL (e.g. http://otel-collector:4318): spans go to its /v1/traces."
        " Unset, the standard OTEL_EXPORTER_OTLP_ENDPOINT applies; neither set, tracing is off",
    )
    consumer_max_attempts: int = Field(
        default=5,
        ge=1,
        description="failures of a handler (not of the infrastructure) before its event is dead-lettered",
    )
