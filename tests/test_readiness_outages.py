"""Readiness and the HTTP APIs through a database or broker outage, on the real stack (issue 9).

What an SRE checks: while the database or the broker is away, ``/health/ready`` answers 503 naming what
fails, and every API answers 503 in the one error shape (not a 500, nothing of the failure leaked);
once it is back, readiness answers 200 again within seconds, by itself, without waiting for the
consumers' back-off, and without a wedged health-check connection keeping it at 503.

Outages are simulated with the loopback proxy of ``tests/faultproxy.py`` in front of the service's
PostgreSQL or Kafka; everyone else keeps using the shared stack.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiokafka.client
import httpx
import pytest
from fastapi import FastAPI

from conftest import PrivateTopics, StackEndpoints, eventually, unique
from contracts.envelope import to_kafka
from runtime import service as service_module
from runtime.auth import issue_token
from runtime.consumer import EventConsumer
from runtime.db import create_pool
from runtime.service import ServiceContext, ServiceSpec, create_app
from runtime.settings import ServiceSettings
from tests.faultkit import HANDLERS, add_events, applied_at_least, send_raw, withdrawn
from tests.faultproxy import TcpProxy, via
from tests.probe import CONSUMER_SQL

pytestmark = pytest.mark.stack


@pytest.fixture
def quiet_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # The service's own logging set-up would replace pytest's capture handlers for the whole session.
    monkeypatch.setattr(service_module, "configure_logging", lambda *_: None)


def _consumer_migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_applied.sql").write_text(CONSUMER_SQL)
    return folder


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://svc", timeout=60)


# 1. The database goes away and comes back ------------------------------------------------------------

BACKOFF_SECONDS = 120.0
"""The consumer's back-off after a failed batch: far longer than the test, so readiness answering 200
again can only come from its own probe of the database, not from the consumer's next success."""


@pytest.mark.usefixtures("quiet_logging")
async def test_readiness_is_back_once_the_database_is_without_waiting_for_the_consumers_back_off(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics, pg_proxy: TcpProxy,
    tmp_path: Path,
) -> None:  # fmt: skip
    topic = await private_topics("readyback", partitions=1)
    schema = unique("ready_db")
    scratch_schemas.append(schema)
    group = unique("ready-db")
    settings = ServiceSettings(
        database_url=via(stack.admin_dsn, pg_proxy.port),
        db_schema=schema,
        kafka_bootstrap=stack.kafka_bootstrap,
        outbox_poll_seconds=0.1,
    )

    def consumers(ctx: ServiceContext) -> list[EventConsumer]:
        return [EventConsumer(name=group, pool=ctx.pool, producer=ctx.producer, topics=(topic,), handlers=HANDLERS,
                              metrics=ctx.metrics, min_backoff_seconds=BACKOFF_SECONDS,
                              max_backoff_seconds=BACKOFF_SECONDS)]  # fmt: skip

    app = create_app(ServiceSpec(name="readyback", settings=settings, migrations=_consumer_migrations(tmp_path),
                                 consumers=consumers))  # fmt: skip
    program = unique("prg")
    records = [to_kafka(withdrawn(program, i)) for i in range(20)]
    raw = [(r.key, r.value, r.headers) for r in records]
    dst = await create_pool(stack.admin_dsn, schema)  # the test's own view, not through the proxy
    try:
        async with app.router.lifespan_context(app), _client(app) as client:
            await send_raw(stack.kafka_bootstrap, topic.name, raw[:10])
            await eventually(applied_at_least(dst, 10), 60, "the consumer to apply the first events")

            async def ready() -> bool:
                return (await client.get("/health/ready")).status_code == 200

            await eventually(ready, 30, "readiness to answer 200 before the outage")
            await pg_proxy.cut()
            await send_raw(stack.kafka_bootstrap, topic.name, raw[10:])  # a batch that meets the outage

            async def unready() -> bool:
                r = await client.get("/health/ready")
                body = r.json()
                return (
                    r.status_code == 503
                    and body["checks"]["database"] is False
                    and f"consumer:{group}" in body.get("failing", {})
                )

            await eventually(unready, 60, "readiness to answer 503 naming the database and the consumer")
            await pg_proxy.restore()
            await eventually(ready, 30, "readiness to answer 200 once the database is back")
            body = (await client.get("/health/ready")).json()
            assert f"consumer:{group}" in body.get("recovering", {}), body
            assert await dst.fetchval("SELECT count(*) FROM applied") == 10, "the consumer is still backing off"
    finally:
        await dst.close()


# 2. Every service's API during a database outage -------------------------------------------------------

# (service, method, path, roles, body): a read of each service, and a write of enrollment's
CALLS: list[tuple[str, str, str, list[str], dict[str, Any] | None]] = [
    ("enrollment", "GET", "/programs", ["admin"], None),
    ("enrollment", "GET", "/org-chart/nobody", ["admin"], None),
    ("enrollment", "POST", "/programs", ["admin"], {"name": "outage", "form": "one_to_one", "starts_on": "2026-01-01"}),
    ("matching", "GET", "/programs/nothing/runs", ["admin"], None),
    ("sessions", "GET", "/me/relationships", ["participant"], None),
    ("feedback", "GET", "/surveys", ["admin"], None),
    ("metrics", "GET", "/kpis", ["admin"], None),
]


@pytest.mark.usefixtures("quiet_logging")
async def test_every_service_answers_503_in_the_one_error_shape_while_its_database_is_away(
    stack: StackEndpoints, scratch_schemas: list[str], pg_proxy: TcpProxy
) -> None:
    apps: dict[str, FastAPI] = {}
    async with contextlib.AsyncExitStack() as running:
        for name in dict.fromkeys(service for service, *_ in CALLS):
            module = importlib.import_module(f"services.{name}.app")
            settings_class: Callable[..., ServiceSettings] = module.settings_class()
            schema = unique(f"outage_{name}")
            scratch_schemas.append(schema)
            settings = settings_class(database_url=via(stack.admin_dsn, pg_proxy.port), db_schema=schema,
                                      kafka_bootstrap=stack.kafka_bootstrap, consumer_offset_reset="latest",
                                      log_level="WARNING")  # fmt: skip
            apps[name] = module.create(settings)
            await running.enter_async_context(apps[name].router.lifespan_context(apps[name]))
        clients = {name: await running.enter_async_context(_client(app)) for name, app in apps.items()}

        async def call(service: str, method: str, path: str, roles: list[str], body: Any) -> httpx.Response:
            token = issue_token(apps[service].state.jwt, unique("user"), roles)
            headers = {"Authorization": f"Bearer {token}"}
            return await clients[service].request(method, path, json=body, headers=headers)

        before = {(s, m, p): (await call(s, m, p, r, b)).status_code for s, m, p, r, b in CALLS}
        assert all(code < 500 for code in before.values()), before
        await pg_proxy.cut()
        for service, method, path, roles, body in CALLS:
            r = await call(service, method, path, roles, body)
            assert r.status_code == 503, (service, method, path, r.status_code, r.text)
            assert r.headers["retry-after"] == "5"
            (item,) = r.json()["detail"]
            assert item["loc"] == [] and item["type"] == "unavailable", item
            leaks = (str(pg_proxy.port), "127.0.0.1", "Errno", "asyncpg", "Connect", "refused")
            assert not any(leak in item["msg"] for leak in leaks), item["msg"]
        await pg_proxy.restore()
        for service, method, path, roles, _body in CALLS:
            if method == "GET":
                await eventually(
                    partial(_answers, call, service, path, roles, before[(service, method, path)]),
                    30,
                    f"{service} {path} to answer as before the outage",
                )


async def _answers(call: Callable[..., Awaitable[httpx.Response]], service: str, path: str, roles: list[str],
                   expected: int) -> bool:  # fmt: skip
    return (await call(service, "GET", path, roles, None)).status_code == expected


# 3. The broker partitioned away (connections silenced, nothing answered) and healed --------------------


@pytest.mark.usefixtures("quiet_logging")
async def test_readiness_is_back_after_a_broker_partition_once_the_relay_and_the_consumer_work_again(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    """FastStream's admin-client ping kept a silenced connection and readiness stayed 503 for minutes
    after the broker was back, while the relay and the consumers already worked again."""
    topic = await private_topics("partition", partitions=1)
    name = unique("bh")
    schema = unique("ready_bh")
    scratch_schemas.append(schema)
    host, port = stack.kafka_bootstrap.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    real_create_conn = aiokafka.client.create_conn

    async def through_proxy(conn_host: str, conn_port: int, **kwargs: Any) -> Any:
        """The service's clients only (its client ids start with its name), bootstrap and advertised
        addresses alike: the broker advertises its own address, so the redirection is in the client."""
        if str(kwargs.get("client_id", "")).startswith(name):
            return await real_create_conn("127.0.0.1", proxy.port, **kwargs)
        return await real_create_conn(conn_host, conn_port, **kwargs)

    monkeypatch.setattr(aiokafka.client, "create_conn", through_proxy)
    settings = ServiceSettings(
        database_url=stack.admin_dsn,
        db_schema=schema,
        kafka_bootstrap=stack.kafka_bootstrap,
        outbox_poll_seconds=0.1,
    )

    def consumers(ctx: ServiceContext) -> list[EventConsumer]:
        return [EventConsumer(name=f"{name}-consumer", pool=ctx.pool, producer=ctx.producer, topics=(topic,),
                              handlers=HANDLERS, metrics=ctx.metrics)]  # fmt: skip

    app = create_app(ServiceSpec(name=name, settings=settings, migrations=_consumer_migrations(tmp_path),
                                 consumers=consumers))  # fmt: skip
    program = unique("prg")
    try:
        async with app.router.lifespan_context(app), _client(app) as client:
            pool = app.state.ctx.pool
            await add_events(pool, topic, [withdrawn(program, i) for i in range(50)])
            await eventually(applied_at_least(pool, 50), 60, "the first events relayed and applied")

            async def ready() -> bool:
                return (await client.get("/health/ready")).status_code == 200

            await eventually(ready, 30, "readiness to answer 200 before the partition")
            await proxy.blackhole()
            await add_events(pool, topic, [withdrawn(program, i) for i in range(50, 100)])

            async def unready() -> bool:
                r = await client.get("/health/ready")
                return r.status_code == 503 and r.json()["checks"]["broker"] is False

            await eventually(unready, 30, "readiness to answer 503 naming the broker")
            await proxy.restore()
            await eventually(applied_at_least(pool, 100), 180, "every event relayed and applied after the partition")
            await eventually(ready, 60, "readiness to answer 200 once the relay and the consumer work again")
            assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    finally:
        await proxy.close()
