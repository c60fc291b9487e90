"""A metrics service on the real stack, in a schema of its own, with a clock the test moves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from conftest import StackEndpoints, eventually, unique
from contracts.envelope import Envelope, to_kafka
from runtime.auth import issue_token
from runtime.db import create_pool, migrate
from runtime.kafka import ensure_topics
from runtime.tail import wait_for_consumer_group
from services.metrics.app import PROJECTED_TOPICS, MetricsSettings, consumer_name, create
from services.metrics.cli import MIGRATIONS
from services.metrics.tests.scenario import T0


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Metrics:
    http: httpx.AsyncClient
    app: object
    admin: dict[str, str]
    integration: dict[str, str]
    participant: dict[str, str]
    schema: str
    dsn: str
    bootstrap: str
    clock: Clock
    producer: AIOKafkaProducer

    async def publish(self, envelopes: list[Envelope]) -> None:
        for env in envelopes:
            r = to_kafka(env)
            await self.producer.send(r.topic, value=r.value, key=r.key, headers=r.headers)
        await self.producer.flush()

    async def applied(self, envelopes: list[Envelope], schema: str | None = None) -> int:
        conn = await asyncpg.connect(self.dsn)
        try:
            return int(
                await conn.fetchval(
                    f'SELECT count(*) FROM "{schema or self.schema}".processed_events WHERE event_id = ANY($1::text[])',
                    [e.id for e in envelopes],
                )
            )
        finally:
            await conn.close()

    async def publish_and_wait(self, envelopes: list[Envelope]) -> None:
        await self.publish(envelopes)

        async def done() -> bool:
            return await self.applied(envelopes) == len({e.id for e in envelopes})

        await eventually(done, 60, "the metrics projection to apply the events")

    async def get(self, path: str, **params: object) -> Any:
        r = await self.http.get(path, params={k: str(v) for k, v in params.items()}, headers=self.admin)
        assert r.status_code == 200, r.text
        return json.loads(r.text)


async def start_group_at_end(bootstrap: str, group: str) -> None:
    """Commit the group's offsets at the end of every projected topic before the service starts, so the
    service reads exactly what a test publishes afterwards (an 'earliest' group then starts there; a
    'latest' one would race the test's first events while it resolves its position)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await ensure_topics(bootstrap)
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t.name, p) for t in PROJECTED_TOPICS for p in consumer.partitions_for_topic(t.name) or ()]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
    finally:
        await consumer.stop()


FreshSchema = Callable[[str], AbstractAsyncContextManager[asyncpg.Pool]]


@pytest.fixture
def fresh_schema(stack: StackEndpoints, scratch_schemas: list[str]) -> FreshSchema:
    """``async with fresh_schema("prefix") as pool``: the metrics tables in a schema of their own, for a test
    that applies events to the read models directly (no service, no Kafka); the schema is dropped after."""

    @asynccontextmanager
    async def fresh(prefix: str) -> AsyncIterator[asyncpg.Pool]:
        schema = unique(prefix)
        scratch_schemas.append(schema)
        pool = await create_pool(stack.admin_dsn, schema)
        try:
            await migrate(pool, schema, {"metrics": MIGRATIONS})
            yield pool
        finally:
            await pool.close()

    return fresh


@pytest.fixture
async def metrics(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[Metrics]:
    schema = unique("metrics_t")
    scratch_schemas.append(schema)
    clock = Clock(T0)
    settings = MetricsSettings(
        database_url=stack.admin_dsn,
        kafka_bootstrap=stack.kafka_bootstrap,
        db_schema=schema,
        log_level="WARNING",
        evaluate_every_seconds=0.2,
    )
    await start_group_at_end(stack.kafka_bootstrap, consumer_name(schema))
    app = create(settings, clock=clock)
    async with AsyncExitStack() as stack_:
        await stack_.enter_async_context(app.router.lifespan_context(app))
        await wait_for_consumer_group(stack.kafka_bootstrap, consumer_name(schema))
        http = await stack_.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://metrics", timeout=60)
        )
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        stack_.push_async_callback(producer.stop)

        def token(role: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {issue_token(app.state.jwt, 'metrics-test', [role])}"}

        yield Metrics(
            http,
            app,
            token("admin"),
            token("integration"),
            token("participant"),
            schema,
            stack.admin_dsn,
            stack.kafka_bootstrap,
            clock,
            producer,
        )
