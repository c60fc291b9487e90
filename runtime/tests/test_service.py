"""The service shell on the real stack: readiness tells the truth, metrics speak Prometheus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from conftest import StackEndpoints, unique
from runtime import service as service_module
from runtime.health import BrokerProbe, Readiness
from runtime.service import ServiceSpec, create_app
from runtime.settings import ServiceSettings

pytestmark = pytest.mark.stack


@pytest.fixture
async def running_app(
    stack: StackEndpoints, scratch_schemas: list[str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    # The service's own logging set-up would replace pytest's capture handlers for the whole session.
    monkeypatch.setattr(service_module, "configure_logging", lambda *_: None)
    schema = unique("svc")
    scratch_schemas.append(schema)
    settings = ServiceSettings(
        database_url=stack.admin_dsn,
        db_schema=schema,
        kafka_bootstrap=stack.kafka_bootstrap,
        outbox_poll_seconds=0.1,
    )
    app = create_app(ServiceSpec(name="probe", settings=settings))
    async with app.router.lifespan_context(app):
        yield app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def test_ready_is_200_when_database_broker_and_relay_answer(running_app: FastAPI) -> None:
    async with _client(running_app) as client:
        response = await client.get("/health/ready")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "status": "ok",
            "checks": {"database": True, "broker": True, "outbox_relay": True},
        }
        assert (await client.get("/health/live")).status_code == 200


async def test_ready_is_503_when_the_broker_is_unreachable(running_app: FastAPI) -> None:
    readiness: Readiness = running_app.state.readiness
    real = readiness.broker
    readiness.broker = BrokerProbe("127.0.0.1:1", "unreachable").check  # nothing listens on port 1
    try:
        async with _client(running_app) as client, asyncio.timeout(10):
            response = await client.get("/health/ready")
    finally:
        readiness.broker = real
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": True, "broker": False, "outbox_relay": True}


async def test_ready_is_503_when_the_outbox_relay_has_ended(running_app: FastAPI) -> None:
    relay: asyncio.Task[None] = running_app.state.relay_task
    relay.cancel()
    await asyncio.gather(relay, return_exceptions=True)
    async with _client(running_app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["outbox_relay"] is False


async def test_metrics_serve_prometheus_text(running_app: FastAPI) -> None:
    async with _client(running_app) as client:
        await client.get("/health/live")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    assert "# TYPE probe_outbox_published_total counter" in text
    assert "# TYPE probe_outbox_relay_errors_total counter" in text
    assert 'probe_http_requests_total{method="GET",route="/health/live",status="200"} 1.0' in text
